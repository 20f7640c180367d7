"""The running daemon (daemon.Daemon): when checks run (scheduler), how (runner), whether the
provider lets us (throttle), and what each check last did (state)."""
