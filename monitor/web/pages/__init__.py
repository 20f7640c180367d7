"""The server-rendered status pages: the overview at `/` and one page per check."""
