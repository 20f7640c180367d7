"""The headers every answer carries, so a page cannot be turned against the people reading it.

The pages run no script at all: the policy names no script source, so nothing a third-party
API manages to put on a page (a reason, a header value, a link) can run. Their one inline
<style> block is allowed by its hash, computed here from the text the pages inline.
"""

from __future__ import annotations

import base64
import hashlib

from monitor.web.pages.style import CSS


def style_hash(css: str) -> str:
    digest = hashlib.sha256(css.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"style-src {style_hash(CSS)}",
        "img-src 'self' data:",
        "form-action 'self'",  # the overview's filter form, to itself only
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Links to a provider's migration guide must not tell it which monitor or check sent you.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}
