"""STARTTLS for SMTP intake: the server's TLS context from ``[smtp] tls_cert`` and ``tls_key``."""

from __future__ import annotations

import ssl
from pathlib import Path

from postdesk.daemon.config import ConfigError, SmtpSettings


def server_context(smtp: SmtpSettings) -> ssl.SSLContext | None:
    """The TLS context intake offers with STARTTLS, or None when no certificate is configured.

    Raises ConfigError naming the key whose file is missing or unusable, so a bad certificate
    stops start-up instead of failing each client's handshake.
    """
    if not smtp.tls_cert:
        return None
    for key, value in (("smtp.tls_cert", smtp.tls_cert), ("smtp.tls_key", smtp.tls_key)):
        if not Path(value).is_file():
            raise ConfigError(f"{key}: no such file: {value}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_verify_locations(cafile=smtp.tls_cert)  # parses the certificate alone
    except (ssl.SSLError, ValueError) as error:
        raise ConfigError(
            f"smtp.tls_cert: not a PEM certificate: {smtp.tls_cert} ({error})"
        ) from None
    try:
        context.load_cert_chain(smtp.tls_cert, smtp.tls_key)
    except ssl.SSLError as error:
        raise ConfigError(
            f"smtp.tls_key: not a PEM private key matching smtp.tls_cert: {smtp.tls_key} ({error})"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
