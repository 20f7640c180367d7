"""Connection settings for everything that sends requests through `checks.http.send`."""

from __future__ import annotations

import functools
import re
import ssl
from typing import Annotated

from pydantic import AfterValidator, Field

from monitor.core.model import Model
from monitor.core.units import Size

# An HTTP field name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header_name(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} is not an HTTP header name")
    return value


class HttpTransport(Model):
    """How to connect and how much to read: the transport fields of http, flow, graphql and
    freshness sources, which inherit them as their own config keys."""

    max_redirects: int = Field(default=5, ge=0, le=30)
    max_body: Size = 1024 * 1024
    tls_verify: bool = True
    # Where this provider puts its request id, tried in order; None: the usual headers
    # (monitor.signals.headers.REQUEST_ID_HEADERS).
    request_id_headers: list[Annotated[str, AfterValidator(_header_name)]] | None = None

    # Built once: creating an SSL context per run costs more than the request. A cached
    # property, not a pydantic private attribute: those cost microseconds on every read.
    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext | bool:
        """aiohttp's `ssl=`: True verifies against the system store, False does not verify."""
        return self.tls_verify
