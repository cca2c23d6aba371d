"""Fixtures of the ASGI tests: one real Hypercorn process for the module
(TLS and h2c ports, ``asgi_testapp:app``), TLS material from trustme, and
client helpers.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Iterator

import pytest
import trustme

from asgi_procs import ServerProcess, hypercorn


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory: Path = tmp_path_factory.mktemp("tls")
    certfile = directory / "server.pem"
    keyfile = directory / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


@pytest.fixture
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture(scope="module")
def hc(cert_files: tuple[str, str]) -> Iterator[ServerProcess]:
    """Hypercorn serving ``asgi_testapp:app``: ``hc.ports["http"]`` (h2c and HTTP/1.1),
    ``hc.ports["https"]`` (TLS, ALPN h2/http1.1). Fails the module's last test
    if Hypercorn logged a traceback."""
    certfile, keyfile = cert_files
    server = hypercorn(
        "asgi_testapp:app",
        "--certfile", certfile,
        "--keyfile", keyfile,
        "--bind", "127.0.0.1:0",
        "--insecure-bind", "127.0.0.1:0",
        expect=2,
    )
    try:
        yield server
    finally:
        code = server.stop()
    assert "Traceback" not in server.log, server.log
    assert code == 0, server.log
