"""STARTTLS on intake with a certificate made here and a real TLS client; JSON log lines."""

from __future__ import annotations

import datetime
import ipaddress
import json
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import CUSTOMER, HELPDESK, Daemon, make_mail, wait_until, write_config


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def tls_config(tmp_path: Path, database_url: str, cert: Path, key: Path) -> Path:
    config = write_config(tmp_path, database_url)
    text = config.read_text().replace(
        "[smtp]\n", f'[smtp]\ntls_cert = "{cert}"\ntls_key = "{key}"\nrequire_tls = true\n'
    )
    config.write_text(text)
    return config


def test_starttls_with_a_real_client_and_plaintext_refused(tmp_path: Path, sqlite_url: str) -> None:
    cert, key = make_certificate(tmp_path)
    daemon = Daemon(tls_config(tmp_path, sqlite_url, cert, key), tmp_path)
    daemon.start()
    try:
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as plain:
            plain.ehlo("client.example.org")
            assert plain.has_extn("starttls")
            code, reply = plain.mail(CUSTOMER)
            assert (code, reply[:5]) == (530, b"5.7.0")
        trusting = ssl.create_default_context(cafile=str(cert))
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.ehlo("client.example.org")
            assert client.starttls(context=trusting)[0] == 220
            assert isinstance(client.sock, ssl.SSLSocket) and client.sock.version() in (
                "TLSv1.2",
                "TLSv1.3",
            )
            client.ehlo("client.example.org")
            client.sendmail(CUSTOMER, [HELPDESK], make_mail(message_id="<tls@example.org>"))
        wait_until(lambda: daemon.inbound_message_ids() == ["<tls@example.org>"], what="stored")
    finally:
        daemon.stop()


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ("missing-cert", "smtp.tls_cert"),
        ("garbage-cert", "smtp.tls_cert"),
        ("garbage-key", "smtp.tls_key"),
    ],
)
def test_bad_certificate_stops_start_up_naming_the_key(
    tmp_path: Path, sqlite_url: str, broken: str, named: str
) -> None:
    cert, key = make_certificate(tmp_path)
    if broken == "missing-cert":
        cert = tmp_path / "nowhere.pem"
    elif broken == "garbage-cert":
        cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    else:
        key.write_text("not a key\n")
    config = tls_config(tmp_path, sqlite_url, cert, key)
    result = subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"postdesk serve: {named}:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    checked = subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 1 and f"FAIL  smtp tls: {named}:" in checked.stdout


def test_json_log_lines_carry_the_message_fields(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url, extra='\n[log]\nformat = "json"\n')
    daemon = Daemon(config, tmp_path)
    daemon.start()
    try:
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
            client.sendmail(CUSTOMER, [HELPDESK], make_mail(message_id="<json@example.org>"))
        wait_until(lambda: '"outcome": "stored"' in daemon.log(), what="outcome logged")
    finally:
        daemon.stop()
    records = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    stored = next(r for r in records if r.get("outcome") == "stored")
    assert stored["message_id"] == "<json@example.org>" and stored["ticket"] == 1
    assert stored["logger"] == "postdesk.worker" and stored["duration"] > 0
    accepted = next(r for r in records if r["message"].startswith("accepted "))
    assert accepted["spool_id"] == stored["spool_id"]


def test_log_format_flag_overrides_the_config(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url)
    mail = tmp_path / "a.eml"
    mail.write_bytes(make_mail(message_id="<flag@example.org>"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "postdesk.daemon.cli",
            "--config",
            str(config),
            "--debug",
            "--log-format",
            "json",
            "ingest",
            str(mail),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert len(records) == len(result.stderr.splitlines())
    assert any(r.get("outcome") == "stored" and r.get("ticket") == 1 for r in records)
