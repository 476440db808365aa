"""A hostile or broken auto-responder on loopback (R-40, R-41): it answers every mail it gets
with a mail of its own, with no ``Auto-Submitted`` and no ``In-Reply-To``, ignoring every
standard header the mail carried."""

from __future__ import annotations

import email
import email.policy
import queue
import smtplib
import threading
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support import free_port


class Responder:
    """An SMTP server that records each mail and answers it to ``reply_port`` as ``address``.

    ``subject`` makes the answer's subject from the received one (a vacation responder keeps
    it, a broken one may not).
    """

    def __init__(self, address: str, subject: Callable[[str], str]) -> None:
        self.address = address
        self.subject = subject
        self.reply_port = 0
        self.port = free_port()
        self.received: list[EmailMessage] = []
        self.answered = 0
        self._todo: queue.Queue[str | None] = queue.Queue()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._thread = threading.Thread(target=self._answer_all, daemon=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Record the mail and queue an answer to it."""
        parsed = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        self._todo.put(str(parsed["Subject"] or ""))
        return "250 2.0.0 Ok"

    def _answer_all(self) -> None:
        while (subject := self._todo.get()) is not None:
            answer = EmailMessage()
            answer["From"] = self.address
            answer["To"] = "support@example.com"
            answer["Subject"] = self.subject(subject)
            answer["Message-ID"] = make_msgid(domain="responder.example.net")
            answer.set_content("I am out of the office until Monday.\n")
            with smtplib.SMTP("127.0.0.1", self.reply_port, timeout=30) as client:
                client.send_message(answer, self.address, ["support@example.com"])
            self.answered += 1

    def start(self) -> None:
        """Start listening and answering."""
        self._controller.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and listening."""
        self._todo.put(None)
        self._thread.join(timeout=30)
        self._controller.stop()
