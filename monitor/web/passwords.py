"""Checking basic-auth passwords against `monitor.web.basic_auth_users` bcrypt hashes.

bcrypt is slow on purpose (about 250 ms at cost 12), so it runs in a worker thread, a few at a
time, and a pair that verified is remembered: Prometheus scraping every 10 s would otherwise pay
a bcrypt check per scrape. The memory holds a keyed digest of (user, password), never the
password, under a key that lives only in this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt

from monitor.config.web import bcrypt_cost

# bcrypt reads at most 72 bytes; the library refuses longer passwords rather than cut them.
MAX_PASSWORD_BYTES = 72
CACHE_SIZE = 64
# A flood of guesses must not take every worker thread the page reads need.
CONCURRENT_CHECKS = 2


def hash_password(password: str, cost: int = 12) -> str:
    """What `intmon hash-password` prints: a $2b$ hash for `basic_auth_users`."""
    raw = password.encode()
    if len(raw) > MAX_PASSWORD_BYTES:
        raise ValueError(f"bcrypt takes at most {MAX_PASSWORD_BYTES} bytes of password")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=cost)).decode()


class Verifier:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        # digest of (user, password) -> the hash it verified against; bounded, oldest out.
        self._verified: OrderedDict[bytes, str] = OrderedDict()
        self._slots = asyncio.Semaphore(CONCURRENT_CHECKS)
        self._dummies: dict[int, bytes] = {}

    async def verify(self, users: Mapping[str, str], user: str, password: str) -> bool:
        raw = password.encode()
        if not users or len(raw) > MAX_PASSWORD_BYTES:
            return False
        digest = hmac.new(self._key, user.encode() + b"\0" + raw, hashlib.sha256).digest()
        expected = users.get(user)
        remembered = self._verified.get(digest)
        # The hash is compared too: a user whose hash changed at a reload verifies afresh.
        known = expected is not None and remembered is not None
        if known and hmac.compare_digest(remembered or "", expected or ""):
            self._verified.move_to_end(digest)
            return True
        # An unknown user pays for a bcrypt check as well, at the cost of a real hash, so the
        # time of an answer does not tell which user names exist.
        target = expected.encode() if expected is not None else self._dummy(users)
        async with self._slots:
            ok = await asyncio.to_thread(bcrypt.checkpw, raw, target)
        if not ok or expected is None:
            return False
        self._verified[digest] = expected
        while len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)
        return True

    def _dummy(self, users: Mapping[str, str]) -> bytes:
        cost = max(bcrypt_cost(h) for h in users.values())
        if cost not in self._dummies:
            # A well-formed hash that no password matches: 53 characters of bcrypt's base64.
            self._dummies[cost] = f"$2b${cost:02d}${'.' * 53}".encode()
        return self._dummies[cost]
