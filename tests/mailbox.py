"""A real SMTP server (aiosmtpd) on a free loopback port, for Apprise's `mailto://`."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    def url(self, **params: str) -> str:
        """Apprise's URL for this server: plain SMTP, no TLS, no login."""
        query = {"from": "intmon@example.com", "to": "ops@example.com", "mode": "insecure"}
        query.update(params)
        pairs = "&".join(f"{key}={value}" for key, value in query.items())
        return f"mailto://127.0.0.1:{self.port}?{pairs}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    async def start(self) -> Mailbox:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
