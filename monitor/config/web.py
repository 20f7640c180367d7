"""`monitor.web:` (who may see and change what) and `status_page:`, as the Prometheus exporters'
web config has them: TLS files, bcrypt users, and the paths served without credentials.

Checked at load, so a wrong file, a mistyped hash or an open heartbeat on a network address is
a config error naming its key, never a surprise at the first request.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from checks.base import CheckConfig
from checks.freshness import heartbeat_secret
from monitor.core.model import Model
from monitor.core.units import brief

# $2a$, $2b$ and $2y$ are the variants bcrypt libraries and htpasswd write; bcrypt accepts a
# cost of 4 to 31 (each step doubles the work).
BCRYPT_HASH = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
MIN_COST, MAX_COST = 4, 31
DEFAULT_PUBLIC = ("/healthz", "/readyz", "/status")
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


def bcrypt_cost(value: str) -> int:
    """The cost of a bcrypt hash; ValueError (never quoting the hash) when it is not one."""
    match = BCRYPT_HASH.match(value)
    if match is None:
        raise ValueError(
            "not a bcrypt hash ($2b$<cost>$ and 53 characters): see intmon hash-password"
        )
    cost = int(match.group(1))
    if not MIN_COST <= cost <= MAX_COST:
        raise ValueError(f"bcrypt cost {match.group(1)} is outside {MIN_COST}..{MAX_COST}")
    return cost


def _bcrypt_hash(value: str) -> str:
    bcrypt_cost(value)
    return value


def _public_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{brief(value)} is not a path (it must start with /)")
    return value


class TlsServerConfig(Model):
    cert_file: str
    key_file: str
    # TLS 1.0 and 1.1 are deprecated (RFC 8996): not offered at all.
    min_version: Literal["TLS12", "TLS13"] = "TLS12"

    @field_validator("cert_file", "key_file")
    @classmethod
    def _relative_to_config(cls, value: str, info: ValidationInfo) -> str:
        # Resolved once, so a reload from another working directory reads the same files.
        base = (info.context or {}).get("config_dir", ".")
        return str((Path(base) / value).resolve())

    @model_validator(mode="after")
    def _loads(self) -> TlsServerConfig:
        self.context()
        return self

    def context(self) -> ssl.SSLContext:
        """A server context from the files as they are now (read again at each reload)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        # SSLError first: it is an OSError too.
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            raise ValueError(f"the certificate and key do not load as a pair: {reason}") from None
        except OSError as exc:
            raise ValueError(
                f"cannot read {exc.filename or self.cert_file}: {exc.strerror}"
            ) from None
        return context


class WebSettings(Model):
    tls_server_config: TlsServerConfig | None = None
    # Hashes are as good as passwords to an offline guesser: never in a repr or a log line.
    basic_auth_users: dict[str, Annotated[str, AfterValidator(_bcrypt_hash)]] = Field(
        default_factory=dict, repr=False
    )
    public: tuple[Annotated[str, AfterValidator(_public_path)], ...] = DEFAULT_PUBLIC

    @field_validator("basic_auth_users")
    @classmethod
    def _user_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            # RFC 7617: the user-id ends at the first colon.
            if not name or ":" in name:
                raise ValueError(f"{brief(name)} cannot be a user name (empty or with a colon)")
        return value


class StatusPageSettings(Model):
    """`status_page:`: which checks the public page at /status shows, besides `public: true`."""

    title: str = "Service status"
    public_checks: tuple[str, ...] = ()  # fnmatch patterns of check names


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may well resolve to a network address


def exposure_issues(
    listen_host: str, checks: Sequence[CheckConfig | None]
) -> list[tuple[tuple[Any, ...], str]]:
    """(key path below `checks`, message) for each heartbeat check anyone on the network could
    push to: with no secret, a stranger could keep a dead sync job looking fresh."""
    if is_loopback(listen_host):
        return []
    return [
        (
            (index, "source", "secret"),
            f"required: monitor.listen {listen_host} is not loopback, and without a secret "
            "anyone who reaches it can push this check's heartbeat",
        )
        for index, check in enumerate(checks)
        if check is not None and heartbeat_secret(check) == (True, None)
    ]
