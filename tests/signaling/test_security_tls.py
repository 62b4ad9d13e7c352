"""`tongxin serve --tls-cert --tls-key` serves HTTPS (and only HTTPS) on its port, with
Strict-Transport-Security; plain HTTP responses carry no HSTS header."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.processes import free_port
from broker.memory_store import MemoryStore
from signaling.app import create_app
from signaling.config import ServeConfig
from signaling.middleware import STRICT_TRANSPORT_SECURITY
from signaling.node import run_node

pytestmark = pytest.mark.timeout(120)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 valid for a day, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_flags_serve_https_with_hsts_and_refuse_plain_http(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = ServeConfig(port=free_port(), media_workers=0, demo=False, data_dir=tmp_path,
                         tls_cert=cert, tls_key=key)
    stop = asyncio.Event()
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    node = asyncio.create_task(run_node(config, stop, started))
    try:
        base = await asyncio.wait_for(started, 60)
        assert base.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz", ssl=trust) as resp:
                assert resp.status == 200
                assert resp.headers["Strict-Transport-Security"] == STRICT_TRANSPORT_SECURITY
            with pytest.raises(aiohttp.ClientError):
                async with http.get(base.replace("https://", "http://") + "/healthz") as resp:
                    await resp.read()
    finally:
        stop.set()
        await asyncio.wait_for(node, 30)


async def test_plain_http_gets_no_hsts_header(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(ServeConfig(media_workers=0, demo=False),
                                             MemoryStore()))
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert "Strict-Transport-Security" not in resp.headers
