"""IMAP polling (RELIABILITY §C, R-16 and R-18 to R-26) against a real Dovecot; moved here from
tests/test_imap.py, whose fixtures and helpers they share."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from postdesk.daemon.config import ImapMailbox, Settings
from postdesk.daemon.intake import imap as intake_imap
from postdesk.daemon.intake import imap_client
from postdesk.daemon.intake.imap import (
    FLAG_QUARANTINED,
    FLAG_SPOOLED,
    FLAG_TOO_LARGE,
    TOO_LARGE_FOLDER,
    MailboxPoller,
)
from postdesk.daemon.intake.imap_client import ImapConnection, ImapError, MessageInfo
from postdesk.daemon.intake.imap_state import MailboxState, Watermark
from postdesk.daemon.intake.spool import Spool
from postdesk.daemon.store.db import make_engine, session_factory, upgrade_schema
from tests.dovecot import Dovecot
from tests.relay import TcpRelay
from tests.support import Daemon, make_mail, send, wait_until, write_config
from tests.test_imap import (  # the fixtures and helpers these cases share with test_imap.py
    dovecot,
    in_process_poller,
    mailbox,
    nested_mime,
    poll_until,
    run_daemon,
    settled,
    start_daemon,
    subjects,
    wait_inbound,
)

__all__ = ["dovecot", "run_daemon"]  # fixtures: imported so that pytest finds them here


def test_r25_backlog_is_taken_in_once_and_flagged(
    tmp_path: Path, database_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    uids = dovecot.append_many(subjects(50))
    daemon = start_daemon(tmp_path, database_url, dovecot.toml())
    run_daemon.append(daemon)
    settled(daemon, 50)

    def all_flagged() -> dict[int, set[str]]:
        flags = dovecot.flags()
        return flags if all(FLAG_SPOOLED in names for names in flags.values()) else {}

    flags = wait_until(all_flagged, what="every message to be flagged")
    assert sorted(flags) == uids
    assert not any("\\Seen" in v for v in flags.values()), "\\Seen is a person's, never ours"
    assert len(daemon.tickets()) == 50


def test_r21_mail_already_read_by_a_person_is_still_taken_in(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    first, _second = dovecot.append_many(subjects(2))
    dovecot.mark_seen(first)
    dovecot.append(make_mail(subject="read on arrival"), flags="\\Seen")
    run_daemon.append(daemon := start_daemon(tmp_path, sqlite_url, dovecot.toml()))
    settled(daemon, 3)


def test_r25_restart_resumes_from_the_watermark(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    dovecot.append_many(subjects(5))
    daemon = start_daemon(tmp_path, sqlite_url, dovecot.toml())
    settled(daemon, 5)
    assert daemon.stop() == 0
    with dovecot.client() as client:  # a server that lost our keywords: only the watermark is left
        client.select("INBOX")
        client.uid("STORE", "1:*", "-FLAGS.SILENT", f"({FLAG_SPOOLED})")
    first_run = daemon.log()
    daemon.start()
    run_daemon.append(daemon)
    dovecot.append(make_mail(subject="after restart"))
    settled(daemon, 6)
    second_run = daemon.log()[len(first_run) :]
    assert "reading from UID 5" in second_run
    assert re.findall(r"spooled (\d+) message", second_run) == ["1"]


def test_r18_connection_cut_in_the_middle_of_a_fetch(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    big_body = "All work and no play makes Jack a dull boy.\n" * 2000  # ~90 kB each
    dovecot.append_many([make_mail(subject=f"big {i}", body=big_body) for i in range(20)])
    relay = TcpRelay(dovecot.port)
    relay.start()
    try:
        relay.cut_after(600_000)  # inside the first round of bodies
        toml = dovecot.toml(port=relay.port, batch_size=20)
        run_daemon.append(daemon := start_daemon(tmp_path, sqlite_url, toml))
        settled(daemon, 20)
        assert relay.cuts == 1
        assert "connection lost" in daemon.log()
    finally:
        relay.stop()


def test_r20_uidvalidity_change_rescans_without_duplicates_or_misses(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    old = subjects(5, "old")
    dovecot.append_many(old, folder="Helpdesk")
    run_daemon.append(
        daemon := start_daemon(
            tmp_path, sqlite_url, dovecot.toml(folder="Helpdesk", poll_seconds=1)
        )
    )
    settled(daemon, 5, wait=0)
    dovecot.recreate_folder("Helpdesk")
    dovecot.append_many(
        old + subjects(3, "new"), folder="Helpdesk"
    )  # new UIDs 1..8 overlap old 1..5
    settled(daemon, 8)
    assert "UIDVALIDITY of Helpdesk changed" in daemon.log()


def test_r24_poison_message_is_quarantined_and_the_rest_flows(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    dovecot.append(make_mail(subject="before poison"))
    dovecot.append(nested_mime(1000))
    dovecot.append_many(subjects(3, "after"))
    run_daemon.append(daemon := start_daemon(tmp_path, sqlite_url, dovecot.toml()))
    settled(daemon, 4)
    held = wait_until(daemon.quarantined, what="quarantine")
    assert [item.channel for item in held] == ["imap:main"]
    wait_until(lambda: FLAG_QUARANTINED in dovecot.flags()[2], what="the poison flagged apart")
    assert FLAG_SPOOLED not in dovecot.flags()[2]


ALERTS_PLUGIN = """
import json, os
from postdesk.plugins import hookimpl

@hookimpl
def postdesk_notify(event, ticket, detail):
    if event.startswith("alert."):
        with open(os.environ["RECORDER_FILE"], "a") as out:
            out.write(json.dumps([event, ticket, dict(detail)], default=str) + "\\n")
"""


def _huge(subject: str, sender: str, headers: dict[str, str] | None = None) -> bytes:
    return make_mail(
        subject=subject, sender=sender, body=("y" * 76 + "\n") * 20_000, headers=headers
    )


def test_r26_oversize_mail_is_moved_aside_with_one_notice_per_sender_and_an_alert(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    dovecot.append(make_mail(subject="small 1"))
    big = [
        dovecot.append(_huge("huge 1", "carol@example.org")),
        dovecot.append(_huge("huge 2", "Carol <CAROL@example.org>")),  # the same sender again
        dovecot.append(_huge("huge 3", "robot@example.org", {"Auto-Submitted": "auto-generated"})),
        dovecot.append(_huge("huge 4", "noreply@example.org")),
    ]
    dovecot.append(make_mail(subject="small 2"))
    (tmp_path / "alerts.py").write_text(ALERTS_PLUGIN)
    recorded = tmp_path / "alerts.jsonl"
    plugins = '[plugins]\nenabled = ["alerts"]\n'
    config = write_config(
        tmp_path, sqlite_url, extra=dovecot.toml(idle=False, poll_seconds=1) + plugins
    )
    env = {"PYTHONPATH": str(tmp_path), "RECORDER_FILE": str(recorded)}
    run_daemon.append(daemon := Daemon(config, tmp_path, env=env))
    daemon.start()
    settled(daemon, 2, wait=3)  # three more polls: no re-fetch loop
    assert dovecot.count(TOO_LARGE_FOLDER) == 4, "every oversized message moved aside"
    assert not set(big) & set(dovecot.flags()), "none left in INBOX"
    assert daemon.log().count("over smtp.max_message_bytes") == 4, "each alerted once"
    assert not {"huge 1", "huge 2"} & {t["subject"] for t in daemon.tickets()}
    notices = [r for r in daemon.outbox() if r.kind == "too_large"]
    assert [r.recipient for r in notices] == ["carol@example.org"], "one notice, people only"
    notice = email.message_from_bytes(notices[0].raw, policy=email.policy.default)
    assert notice["Auto-Submitted"] == "auto-replied" and "huge" not in notice.as_string()
    alerts = wait_until(lambda: _records(recorded) if len(_records(recorded)) == 4 else [])
    assert {event for event, _ticket, _detail in alerts} == {"alert.imap_oversize"}
    assert sorted(d["from"] for _e, _t, d in alerts) == ["", ""] + ["carol@example.org"] * 2
    assert all(d["size"] > d["limit"] == 1_000_000 for _e, _t, d in alerts)


def _records(path: Path) -> list[list[Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_r26_where_the_server_refuses_the_folder_the_message_is_flagged_instead(
    tmp_path: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake_imap, "TOO_LARGE_FOLDER", "~TooLarge")  # Dovecot refuses the name
    small, big = (
        dovecot.append(make_mail(subject="small")),
        dovecot.append(_huge("huge", "c@x.org")),
    )
    poller, spool = in_process_poller(tmp_path, mailbox(dovecot))
    poller.max_bytes = 1_000_000
    noticed: list[str] = []
    poller.on_oversize = lambda sender, _detail: noticed.append(sender)
    poll_until(poller, lambda: poller.state.load().last_uid == big, worker=spool)
    flags = dovecot.flags()
    assert FLAG_TOO_LARGE in flags[big] and FLAG_SPOOLED not in flags[big]
    assert FLAG_SPOOLED in flags[small]
    assert noticed == ["c@x.org"]


def test_r16_same_mail_by_smtp_and_imap_is_stored_once(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    raw = make_mail(subject="both ways")
    run_daemon.append(daemon := start_daemon(tmp_path, sqlite_url, dovecot.toml()))
    assert send(daemon.port, raw)[0] == 250
    wait_inbound(daemon, 1)
    dovecot.append(raw)
    wait_until(lambda: "duplicate" in daemon.log(), what="the IMAP copy to be recognised")
    settled(daemon, 1)


def test_r19_drop_before_move_is_settled_by_the_next_session(
    tmp_path: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake_imap, "BACKOFF_FIRST_SECONDS", 0.05)
    uids = dovecot.append_many(subjects(3))
    move = ImapConnection.move
    calls: list[list[int]] = []

    async def drop_first_move(self: ImapConnection, wanted: list[int], folder: str) -> None:
        calls.append(wanted)
        if len(calls) == 1:
            raise ImapError("connection dropped after the spool, before MOVE")
        await move(self, wanted, folder)

    monkeypatch.setattr(ImapConnection, "move", drop_first_move)
    poller, spool = in_process_poller(tmp_path, mailbox(dovecot, after="move", move_to="Done"))
    # Done on the server (MOVE, watermark) only once the worker has settled the batch.
    settled = poll_until(poller, lambda: poller.state.load().last_uid == uids[-1], worker=spool)
    assert calls == [uids, uids]
    assert len(settled) == 6, "spooled again; the worker's dedupe stores each once"
    assert dovecot.count("INBOX") == 0 and dovecot.count("Done") == 3


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_r25_two_thousand_messages(
    tmp_path: Path, sqlite_url: str, dovecot: Dovecot, run_daemon: list[Daemon]
) -> None:
    dovecot.append_many(subjects(2000), connections=4)
    started = time.monotonic()
    run_daemon.append(daemon := start_daemon(tmp_path, sqlite_url, dovecot.toml()))
    settled(daemon, 2000, wait=1)
    assert time.monotonic() - started < 240


def test_r23_a_server_that_never_answers_times_out_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap_client, "CONNECT_TIMEOUT_SECONDS", 0.3)
    monkeypatch.setattr(intake_imap, "BACKOFF_FIRST_SECONDS", 0.05)
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)

    async def scenario() -> MailboxPoller:
        connections: list[asyncio.StreamWriter] = []

        async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)  # accept, then say nothing at all

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        box = ImapMailbox(host="127.0.0.1", port=port, security="none", username="u", password="p")
        poller = MailboxPoller(
            box, Settings(), session_factory(engine), Spool(tmp_path / "spool"), lambda: None, "me"
        )
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(2.0)
        stopped = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 2)
        assert time.monotonic() - stopped < 1
        server.close()
        for writer in connections:
            writer.close()
        return poller

    poller = asyncio.run(scenario())
    assert poller.failures >= 3
    assert MailboxState(session_factory(engine), "main", "other").acquire(30), "lease released"


def test_r23_a_server_that_stalls_mid_fetch_is_timed_out_and_retried(
    tmp_path: Path,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(imap_client, "COMMAND_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(intake_imap, "BACKOFF_FIRST_SECONDS", 0.05)
    body = "Stalled servers are the worst kind of servers.\n" * 2000
    dovecot.append_many([make_mail(subject=f"big {i}", body=body) for i in range(10)])
    relay = TcpRelay(dovecot.port)
    relay.start()
    try:
        relay.stall_after(300_000)  # inside the first round of bodies
        poller, spool = in_process_poller(tmp_path, mailbox(dovecot, port=relay.port))
        poll_until(poller, lambda: spool.pending() >= 10)
    finally:
        relay.stop()
    assert relay.cuts == 1 and spool.pending() == 10
    assert "UID FETCH: no answer within 1 s" in caplog.text


def test_r22_concurrent_expunge_takes_the_right_messages(
    tmp_path: Path,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uids = dovecot.append_many(subjects(5))
    fetch_info = ImapConnection.fetch_info

    async def fetch_info_then_expunge(self: ImapConnection, wanted: list[int]) -> list[MessageInfo]:
        infos = await fetch_info(self, wanted)
        await asyncio.to_thread(dovecot.expunge, uids[1])  # another client, mid-batch
        return list(infos)

    monkeypatch.setattr(ImapConnection, "fetch_info", fetch_info_then_expunge)
    poller, spool = in_process_poller(tmp_path, mailbox(dovecot))
    entries = poll_until(poller, lambda: poller.state.load().last_uid == uids[-1], worker=spool)
    by_uid = {int(e.envelope.peer.rpartition(" ")[2]): e.raw for e in entries}
    assert sorted(by_uid) == [uids[0], *uids[2:]]
    for uid, raw in by_uid.items():
        assert f"Subject: m {uids.index(uid)}\r\n".encode() in raw
    assert f"UID {uids[1]} vanished" in caplog.text
    assert poller.state.load() == Watermark(dovecot.uidvalidity(), uids[-1])
