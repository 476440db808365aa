"""R-17 (outbound kill point) and the outbox lease: a row claimed by a daemon that was killed
is released when that daemon starts again, not ten minutes later; a lease is renewed while its
mail is being sent, so a slow relay never lets a second daemon send the same row."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from postdesk.daemon.outbound.sender import OutboxSender
from tests.reliability.procs import running_daemon
from tests.reliability.properties import SendLog, assert_p1_to_p4
from tests.support import CUSTOMER, SmtpSink, wait_until
from tests.test_outbox_sender import Env, queue
from tests.test_outbox_sender import env as env  # the fixture, shared


class StallingSink(SmtpSink):
    """A relay that, while ``stalled`` is set, never answers DATA."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()
        self.delay = 0.0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Hang while stalled (the daemon dies meanwhile), else record after ``delay``."""
        if self.stalled.is_set():
            await asyncio.sleep(3600)
            return "451 4.3.0 never reached"
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def relay() -> Iterator[StallingSink]:
    sink = StallingSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def test_r17_rows_claimed_by_a_killed_daemon_are_released_at_its_restart(
    tmp_path: Path, database_url: str, relay: StallingSink
) -> None:
    relay.stalled.set()
    with running_daemon(tmp_path, database_url, relay=f"smtp://127.0.0.1:{relay.port}") as daemon:
        log = SendLog()
        assert log.send_new(daemon.port, "lease", 1) == 250
        wait_until(lambda: any(r.claimed_by for r in daemon.outbox()), what="the ack claimed")
        daemon.kill()
        relay.stalled.clear()
        daemon.start()
        wait_until(lambda: relay.to("customer1@example.org"), timeout=15, what="ack after restart")
        assert "released 1 outbox row(s) claimed before the last restart" in daemon.log()
        assert_p1_to_p4(daemon, log)
        assert len(relay.received) == 1


def test_r17_lease_is_renewed_while_a_slow_relay_takes_longer_than_it(
    env: Env, relay: StallingSink
) -> None:
    env = env.relay_to(relay.port)
    relay.delay = 1.5
    item = queue(env, to=CUSTOMER)
    assert item is not None
    first = OutboxSender(env.settings, env.factory, lease_seconds=0.4, owner="daemon-a")
    second = OutboxSender(env.settings, env.factory, lease_seconds=0.4, owner="daemon-b")

    async def race() -> tuple[int, int]:
        sending = asyncio.create_task(first.drain_once())
        await asyncio.sleep(0.9)  # over twice the lease: only renewal keeps it
        stolen = await second.drain_once()
        return await sending, stolen

    sent, stolen = asyncio.run(race())
    assert (sent, stolen) == (1, 0)
    assert len(relay.received) == 1
