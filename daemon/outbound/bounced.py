"""Which recipients a relay's permanent refusal condemns (R-29), kept out of the sender."""

from __future__ import annotations

from collections.abc import Sequence

import aiosmtplib


def refused_for_good(
    exc: aiosmtplib.SMTPResponseException, recipients: Sequence[str]
) -> tuple[str, ...]:
    """The addresses a 5xx reply refuses: the recipient of a refused RCPT, or the only recipient
    of a mail refused at DATA; never the sender (a 5xx at MAIL FROM says nothing of them)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return (exc.recipient,)
    if isinstance(exc, aiosmtplib.SMTPDataError) and len(recipients) == 1:
        return (recipients[0],)
    return ()
