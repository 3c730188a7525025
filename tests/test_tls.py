"""`ticketlog serve --ssl-certfile --ssl-keyfile`: HTTPS with a real certificate, a real process,
and a one-line refusal (exit code 2) when the files cannot work."""

from __future__ import annotations

import ipaddress
import os
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.test_cli import run_cli, serving
from ticketlog.loopback import free_port


def self_signed(
    directory: Path, name: str = "server", passphrase: bytes | None = None
) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key (encrypted under the passphrase,
    if given), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_an_encrypted_key_opens_with_its_passphrase_from_the_environment(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, passphrase=b"correct horse")
    flags = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    assert "TICKETLOG_SSL_KEYFILE_PASSWORD" in _refusal(tmp_path, *flags)
    wrong = {"TICKETLOG_SSL_KEYFILE_PASSWORD": "wrong"}
    assert "do not load" in _refusal(tmp_path, *flags, env=wrong)
    password = {"TICKETLOG_SSL_KEYFILE_PASSWORD": "correct horse"}
    trusted = ssl.create_default_context(cafile=str(cert))
    with serving(tmp_path / "data", password, flags=flags, verify=trusted) as (base, _):
        r = httpx.get(f"{base}/healthz", verify=trusted, timeout=2)
        assert r.status_code == 200
        assert r.json()["status"] == "ok"  # a real answer over TLS, not just a handshake


def test_serve_answers_over_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    flags = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    trusted = ssl.create_default_context(cafile=str(cert))
    with serving(tmp_path / "data", flags=flags, verify=trusted) as (base, _):
        assert base.startswith("https://127.0.0.1:")
        port = base.rsplit(":", 1)[1]
        r = httpx.get(f"{base}/healthz", verify=trusted, timeout=2)
        assert r.status_code == 200
        assert r.json()["status"] == "ok"
        assert httpx.get(f"https://localhost:{port}/healthz", verify=trusted).status_code == 200

        # Plain HTTP gets no answer, and a client that does not trust the certificate stops.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        other, _ = self_signed(tmp_path, "other")
        stranger = ssl.create_default_context(cafile=str(other))
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=stranger, timeout=5)


def _refusal(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    result = run_cli(tmp_path / "data", "serve", "--port", str(free_port()), *flags, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ticketlog: error: ")
    assert not (tmp_path / "data").exists()  # refused before opening anything
    return lines[0]


def test_one_file_without_the_other_is_refused_in_one_line(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert "give both or neither" in _refusal(tmp_path, "--ssl-certfile", str(cert))
    assert "give both or neither" in _refusal(tmp_path, "--ssl-keyfile", str(key))


def test_a_missing_or_unreadable_file_is_refused_in_one_line(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    missing = str(tmp_path / "nope.crt")
    line = _refusal(tmp_path, "--ssl-certfile", missing, "--ssl-keyfile", str(key))
    assert f"--ssl-certfile: no such file: {missing}" in line
    if os.geteuid() != 0:  # root reads anything
        key.chmod(0)
        line = _refusal(tmp_path, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
        assert "--ssl-keyfile: cannot read" in line


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    _, other_key = self_signed(tmp_path, "other")
    line = _refusal(tmp_path, "--ssl-certfile", str(cert), "--ssl-keyfile", str(other_key))
    assert "do not load" in line
    line = _refusal(tmp_path, "--ssl-certfile", str(other_key), "--ssl-keyfile", str(cert))
    assert "do not load" in line
