"""TLS on the HTTP surface, with certificates made in the test: a real `intmon run` serving
HTTPS with users, plain HTTP to its port, a certificate rotated under SIGHUP without a restart,
the minimum version, and files that do not make a pair."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from monitor.config.loader import parse_config
from monitor.config.web import TlsServerConfig
from monitor.core.errors import ConfigError
from tests import tls as pki_files  # its TestPKI would be collected as a test class
from tests.test_cli import free_port
from tests.test_web_access import OPS, OPS_HASH
from tests.tls import make_pki
from tests.waiting import until_ready


@dataclass
class Tls:
    url: str
    port: int
    first: pki_files.TestPKI
    second: pki_files.TestPKI
    folder: Path
    client: ssl.SSLContext
    process: asyncio.subprocess.Process


def der(pki: pki_files.TestPKI) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pki.cert_file.read_text())


async def presented(port: int, client: ssl.SSLContext) -> bytes:
    """The certificate a new connection is shown."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    try:
        certificate = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert certificate is not None
        return bytes(certificate)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def tls(tmp_path: Path, sandbox: str) -> AsyncIterator[Tls]:
    first, second = make_pki(_folder(tmp_path / "a")), make_pki(_folder(tmp_path / "b"))
    shutil.copy(first.cert_file, tmp_path / "tls.crt")
    shutil.copy(first.key_file, tmp_path / "tls.key")
    port = free_port()
    config = {
        "monitor": {
            "database": str(tmp_path / "m.db"),
            "listen": f"127.0.0.1:{port}",
            # Relative to the config file, as an operator would write them next to it.
            "web": {
                "tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"},
                "basic_auth_users": {"ops": OPS_HASH},
            },
        },
        "checks": [{"name": "web", "interval": "1h", "request": {"url": sandbox + "/healthy"}}],
    }
    path = tmp_path / "monitor.yaml"
    path.write_text(json.dumps(config))
    client = ssl.create_default_context(cafile=first.ca_file)
    client.load_verify_locations(second.ca_file)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "--config", str(path),
        stderr=asyncio.subprocess.PIPE, env=os.environ.copy(),
    )  # fmt: skip
    running = Tls(f"https://127.0.0.1:{port}", port, first, second, tmp_path, client, process)
    try:
        await until_ready(running.url, client)
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.communicate(), timeout=15)


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


async def test_over_tls_private_paths_need_credentials_and_public_ones_do_not(tls: Tls) -> None:
    async with aiohttp.ClientSession() as http:
        for path, anonymous in [("/", 401), ("/api/status", 401), ("/metrics", 401),
                                ("/healthz", 200), ("/status", 200)]:  # fmt: skip
            async with http.get(tls.url + path, ssl=tls.client) as response:
                assert response.status == anonymous, path
            async with http.get(tls.url + path, ssl=tls.client, headers=OPS) as response:
                assert response.status == 200, path


async def test_plain_http_to_the_tls_port_fails_cleanly(tls: Tls) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{tls.port}/api/status", headers=OPS) as r:
                await r.read()
        # The daemon is unharmed and says nothing alarming about it.
        async with http.get(tls.url + "/healthz", ssl=tls.client) as response:
            assert response.status == 200
    tls.process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(tls.process.communicate(), timeout=15)
    assert tls.process.returncode == 0
    assert "Traceback" not in err.decode()
    assert "ERROR" not in err.decode()


async def test_a_rotated_certificate_is_served_after_sighup_without_a_restart(tls: Tls) -> None:
    assert await presented(tls.port, tls.client) == der(tls.first)
    shutil.copy(tls.second.cert_file, tls.folder / "tls.crt")
    shutil.copy(tls.second.key_file, tls.folder / "tls.key")
    tls.process.send_signal(signal.SIGHUP)
    shown: list[bytes] = []

    async def rotated() -> bool:
        shown.append(await presented(tls.port, tls.client))
        return shown[-1] == der(tls.second)

    for _ in range(100):
        if await rotated():
            break
        await asyncio.sleep(0.05)
    assert shown[-1] == der(tls.second), "the new certificate was not served after SIGHUP"
    assert tls.process.returncode is None  # the same process: no restart
    tls.process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(tls.process.communicate(), timeout=15)
    assert "TLS certificate reloaded" in err.decode()


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keeps the connection until the client ends it: closing first would race the handshake."""
    await reader.read()
    writer.close()


async def test_the_minimum_version_is_enforced(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = TlsServerConfig(
        cert_file=str(pki.cert_file), key_file=str(pki.key_file), min_version="TLS13"
    )
    listener = await asyncio.start_server(_hold, "127.0.0.1", 0, ssl=server.context())
    port = listener.sockets[0].getsockname()[1]
    old = ssl.create_default_context(cafile=pki.ca_file)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):  # an alert, or a reset
            await asyncio.open_connection("127.0.0.1", port, ssl=old)
        current = ssl.create_default_context(cafile=pki.ca_file)
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=current)
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        writer.close()
        await writer.wait_closed()
    finally:
        listener.close()
        await listener.wait_closed()


def test_a_certificate_and_a_key_that_are_not_a_pair_are_a_config_error(tmp_path: Path) -> None:
    first, second = make_pki(_folder(tmp_path / "a")), make_pki(_folder(tmp_path / "b"))
    text = (
        "monitor:\n  web:\n    tls_server_config:\n"
        f"      cert_file: {first.cert_file}\n      key_file: {second.key_file}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    expected = "3: monitor.web.tls_server_config: the certificate and key do not load as a pair"
    assert f"{expected}: KEY_VALUES_MISMATCH" in str(info.value)
