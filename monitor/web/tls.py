"""The server's TLS context, taken up again at each reload so a rotated certificate needs no
restart (as the Prometheus exporters' web config does).

The listening socket keeps one `ssl.SSLContext`; a reload loads the new files into it, and each
handshake after that presents the new certificate. Connections already open keep theirs.
"""

from __future__ import annotations

import logging
import ssl

from monitor.config.web import TLS_VERSIONS, TlsServerConfig

log = logging.getLogger(__name__)


class ServerTls:
    def __init__(self, config: TlsServerConfig) -> None:
        self.config = config
        self.context: ssl.SSLContext = config.context()

    def reload(self, config: TlsServerConfig | None) -> None:
        """Take up `config`'s files as they are now; on any problem the running ones stay."""
        if config is None:
            log.warning("monitor.web.tls_server_config was removed: TLS stays on until a restart")
            return
        try:
            # A fresh context first: the live one is touched only once the pair is known good,
            # so a half-copied key never leaves the server without a usable certificate.
            config.context()
        except ValueError as exc:
            log.error("TLS files not reloaded, the running certificate stays: %s", exc)
            return
        self.context.minimum_version = TLS_VERSIONS[config.min_version]
        self.context.load_cert_chain(config.cert_file, config.key_file)
        self.config = config
        log.info("TLS certificate reloaded from %s", config.cert_file)
