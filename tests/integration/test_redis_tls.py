"""``rediss://``: the backend over TLS to a real redis-server with its own CA."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubenenc.errors import BackendUnavailable
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, add, claim_ids, succeed
from kubenenc_redis import RedisBackend

from tests.servers.redis import RedisServer, require_redis_server
from tests.support import free_port

pytestmark = pytest.mark.redis


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _certificates(folder: Path, name: str, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``host`` signed by it: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host)]
                if not host[0].isdigit()
                else [x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (
        _pem(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        _pem(folder / "server.pem", cert.public_bytes(serialization.Encoding.PEM)),
        _pem(folder / "server.key", key_pem),
    )


@pytest.mark.timeout(60)
def test_rediss_with_the_servers_ca(tmp_path: Path) -> None:
    require_redis_server()
    ca, cert, key = _certificates(tmp_path / "certs", "kubenenc-test")
    other_ca, _, _ = _certificates(tmp_path / "other", "someone-else")
    tls_port = free_port()
    server = RedisServer(
        tmp_path / "redis", "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
    ).start()  # fmt: skip
    try:
        base = f"rediss://127.0.0.1:{tls_port}/0"
        backend = RedisBackend.from_url(f"{base}?ssl_ca_certs={ca}&prefix=tls")
        try:
            id = add(backend, 1.0)
            assert claim_ids(backend, W1, 1, 2.0) == [id]
            succeed(backend, id)
            assert backend.wait_final([id], 5.0)
            assert dict(backend.counts()) == {Status.SUCCESS: 1}
        finally:
            backend.close()
        # A server whose certificate the client cannot verify is refused at start.
        with pytest.raises(BackendUnavailable, match=r"(?i)certificate|ssl"):
            RedisBackend.from_url(f"{base}?ssl_ca_certs={other_ca}")
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_rediss_refuses_a_certificate_for_another_host(tmp_path: Path) -> None:
    """Signed by the trusted CA but issued to another name: a man in the middle with a
    certificate of its own must be refused, so host names are checked (redis-py >= 6)."""
    require_redis_server()
    ca, cert, key = _certificates(tmp_path / "certs", "kubenenc-test", host="db.example")
    tls_port = free_port()
    server = RedisServer(
        tmp_path / "redis", "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
    ).start()  # fmt: skip
    try:
        with pytest.raises(BackendUnavailable, match=r"(?i)hostname|match|certificate"):
            RedisBackend.from_url(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}")
    finally:
        server.stop()
