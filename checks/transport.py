"""Connection settings for check types that send requests through `checks.http.send`."""

from __future__ import annotations

from typing import Any

from pydantic import Field, PrivateAttr

from checks.http import HttpCheck, RequestSpec
from monitor.core.model import Model
from monitor.core.units import Size


class HttpTransport(Model):
    """The transport fields of `type: http`, for flow, graphql and freshness sources."""

    max_redirects: int = Field(default=5, ge=0, le=30)
    max_body: Size = 1024 * 1024
    tls_verify: bool = True

    _http: HttpCheck = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        # `perform` takes its connection settings from an HttpCheck; one is built here, once,
        # rather than widening perform's signature while the http check is still moving.
        self._http = HttpCheck(
            name="transport",
            request=RequestSpec(url="http://transport.invalid/"),
            max_redirects=self.max_redirects,
            max_body=self.max_body,
            tls_verify=self.tls_verify,
        )

    @property
    def http_options(self) -> HttpCheck:
        return self._http
