"""R-33 with IMAP at the same time, and R-36 beside that load: SMTP sessions, an IMAP mailbox
and one large message with attachments arrive together; every message is stored once, the
large one's attachments intact. Sized for CI (``RELIABILITY_SCALE=10`` by hand); latencies are
printed as figures, not asserted (timings belong to bench/)."""

from __future__ import annotations

import hashlib
import os
import smtplib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from postdesk.daemon.intake.spool import IN_MEMORY
from postdesk.daemon.store.attachments import blob_path
from postdesk.daemon.store.db import make_engine, session_factory
from postdesk.models.schema import Attachment, Message
from tests.dovecot import Dovecot
from tests.reliability.properties import SendLog, assert_p1_to_p4, scaled
from tests.reliability.test_r33_load import BODY, send_load
from tests.reliability.test_r36_large_message import large_mail
from tests.support import HELPDESK, make_mail
from tests.test_imap import dovecot as dovecot  # the fixture, shared
from tests.test_imap import start_daemon

pytestmark = pytest.mark.imap

LARGE_ID = "<r36-large@example.org>"


def test_r33_r36_smtp_imap_and_a_large_message_at_once_lose_and_double_nothing(
    tmp_path: Path, database_url: str, dovecot: Dovecot
) -> None:
    smtp_total, imap_total = scaled(200), scaled(60)
    imap_ids = [f"<imap-{n}@example.org>" for n in range(imap_total)]
    dovecot.append_many(
        [
            make_mail(f"imap {n}", BODY, sender=f"reader{n}@example.org", message_id=mid)
            for n, mid in enumerate(imap_ids)
        ]
    )
    files = [os.urandom(3 * IN_MEMORY) for _ in range(4)]  # 12 MiB of attachments
    daemon = start_daemon(
        tmp_path, database_url, dovecot.toml(batch_size=20), max_bytes=24 * IN_MEMORY
    )
    try:
        log, latencies = SendLog(), []

        def large() -> None:
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=120) as client:
                client.sendmail("carol@example.org", [HELPDESK], large_mail(files))
            log.codes.append(250)
            log.accepted.append(LARGE_ID)

        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(send_load, daemon.port, smtp_total, log, latencies)]
            jobs.append(pool.submit(large))
            for job in jobs:
                job.result()
        # on the server before the daemon started, so all are owed (no SMTP reply of their own:
        # the figures' 'sent' counts SMTP replies only)
        log.accepted.extend(imap_ids)
        figures = assert_p1_to_p4(daemon, log, timeout=scaled(400))
        assert figures["stored"] == smtp_total + imap_total + 1

        engine = make_engine(daemon.settings.database_url)
        try:
            with session_factory(engine)() as db:
                message_pk = db.scalar(select(Message.id).where(Message.message_id == LARGE_ID))
                stored = db.scalars(
                    select(Attachment).where(Attachment.message_pk == message_pk)
                ).all()
        finally:
            engine.dispose()
        expected = sorted(hashlib.sha256(data).hexdigest() for data in files)
        assert sorted(item.sha256 for item in stored) == expected
        for item in stored:
            blob = blob_path(daemon.settings.data_dir, item.sha256).read_bytes()
            assert hashlib.sha256(blob).hexdigest() == item.sha256
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(
            f"R-33/R-36 figures: {figures}, smtp {smtp_total} + imap {imap_total} + 1 large, "
            f"settled in {time.monotonic() - started:.1f}s, small DATA->250 p99 {p99 * 1000:.0f} ms"
        )
    finally:
        daemon.stop()
