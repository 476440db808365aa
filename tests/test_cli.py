"""The command line: ingest, tickets, ticket, quarantine (list and replay), check, and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import CUSTOMER, Daemon, make_mail, write_config

CORPUS = Path(
    os.environ.get("POSTDESK_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
DEEP = b"".join(
    f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n'.encode() for n in range(200)
)


def postdesk(config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point."""
    return subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def offline(tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    """A configured data dir whose daemon is not running: for command-line use only."""
    daemon = Daemon(write_config(tmp_path, database_url), tmp_path)
    yield daemon
    daemon.stop()  # closes the test's own database connections


def write_eml(folder: Path, name: str, raw: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(raw)
    return path


def test_ingest_then_tickets_and_ticket_json(offline: Daemon, tmp_path: Path) -> None:
    mails = tmp_path / "mails"
    write_eml(mails, "a.eml", make_mail(subject="first", message_id="<a@example.org>"))
    write_eml(mails, "b.eml", make_mail(subject="second", sender="dave@example.org"))
    result = offline.cli("ingest", str(mails / "a.eml"), str(mails / "b.eml"), str(mails / "a.eml"))
    assert "ingested 3 message(s): 2 stored (2 new tickets), 1 duplicate" in result.stdout

    listed = json.loads(offline.cli("tickets", "--json").stdout)
    assert [t["subject"] for t in listed] == ["first", "second"]
    assert "messages" not in listed[0]
    one = json.loads(offline.cli("ticket", "1", "--json").stdout)
    for key in (
        "number",
        "tag",
        "subject",
        "status",
        "priority",
        "category",
        "requester",
        "assignee",
        "spam",
        "participants",
        "messages",
    ):
        assert key in one
    assert one["tag"] == "[Example #1]" and one["requester"] == CUSTOMER
    message = one["messages"][0]
    assert {"message_id", "direction", "author", "internal", "auto", "text", "attachments"} <= set(
        message
    )
    assert "[Example #1]" in offline.cli("tickets").stdout
    assert "Printer" not in offline.cli("ticket", "2").stdout


def test_ingest_reads_maildir_and_mbox(offline: Daemon, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    write_eml(maildir / "new", "1.host", make_mail(subject="from maildir"))
    mbox = tmp_path / "archive.mbox"
    mbox.write_bytes(
        b"From carol@example.org Mon Jan  1 00:00:00 2024\n"
        + make_mail(subject="from mbox 1").replace(b"\r\n", b"\n")
        + b"\nFrom dave@example.org Mon Jan  1 00:00:00 2024\n"
        + make_mail(subject="from mbox 2", sender="dave@example.org").replace(b"\r\n", b"\n")
    )
    result = offline.cli("ingest", str(maildir), str(mbox))
    assert "3 stored (3 new tickets)" in result.stdout, result.stdout
    assert sorted(t["subject"] for t in offline.tickets()) == [
        "from maildir",
        "from mbox 1",
        "from mbox 2",
    ]


def test_hostile_mail_is_quarantined_listed_and_replayable(offline: Daemon, tmp_path: Path) -> None:
    deep = b"From: carol@example.org\r\nSubject: deep\r\n" + DEEP
    no_sender = b"Subject: who am I\r\n\r\nno From header at all\r\n"
    ambiguous = b"From: alice@corp.com@evil.com\r\nSubject: spoof\r\n\r\nhi\r\n"
    paths = [
        write_eml(tmp_path / "bad", f"{n}.eml", raw)
        for n, raw in enumerate((deep, no_sender, ambiguous))
    ]
    result = offline.cli("ingest", *map(str, paths))
    assert "3 held" in result.stdout

    held = json.loads(offline.cli("quarantine", "--json").stdout)
    reasons = sorted(h["reason"] for h in held)
    assert any("MIME" in r or "nest" in r for r in reasons), reasons
    assert sum("sender" in r for r in reasons) == 2, reasons
    assert all(h["size"] > 0 for h in held), "raw bytes are kept"
    assert "deep" not in offline.cli("quarantine").stderr

    replay = offline.cli("quarantine", "replay", str(held[0]["id"]))
    assert "replayed 1" in replay.stdout and "1 held" in replay.stdout, replay.stdout
    assert len(json.loads(offline.cli("quarantine", "--json").stdout)) == 3, "held again, once"
    assert "replayed 3" in offline.cli("quarantine", "replay", "--all").stdout


def test_undecodable_and_broken_mime_still_become_tickets(offline: Daemon, tmp_path: Path) -> None:
    bogus_charset = (
        b"From: carol@example.org\r\nSubject: =?x-bogus-42?q?hi?=\r\nContent-Type: text/plain; charset=x-bogus-42\r\n\r\n"
        b"caf\xe9 cr\xe8me \x00 end\r\n"
    )
    unclosed = (
        b'From: carol@example.org\r\nSubject: unclosed\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n'
        b"--zz\r\nContent-Type: text/plain\r\n\r\nthe text survives\r\n"
    )
    bad_base64 = b"From: carol@example.org\r\nSubject: b64\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n"
    paths = [
        write_eml(tmp_path / "odd", f"{n}.eml", raw)
        for n, raw in enumerate((bogus_charset, unclosed, bad_base64))
    ]
    assert "3 stored (3 new tickets)" in offline.cli("ingest", *map(str, paths)).stdout
    texts = {t["subject"]: t["messages"][0]["text"] for t in offline.tickets()}
    assert "café crème" in next(v for k, v in texts.items() if "hi" in k or "bogus" in k)
    assert "the text survives" in texts["unclosed"]


def test_attachments_are_stored_by_hash_never_by_name(offline: Daemon, tmp_path: Path) -> None:
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = CUSTOMER, "support@example.com", "files"
    mail.set_content("see attached")
    for name in (
        "../../etc/passwd",
        "..\\..\\win.ini",
        "invoice\u202efdp.exe",
        "CON",
        "<img src=x onerror=1>.png",
    ):
        mail.add_attachment(
            b"data for " + name.encode(),
            maintype="application",
            subtype="octet-stream",
            filename=name,
        )
    path = write_eml(tmp_path / "att", "a.eml", bytes(mail))
    offline.cli("ingest", str(path))
    attachments = offline.ticket(1)["messages"][0]["attachments"]
    names = [a["filename"] for a in attachments]
    assert len(names) == 5
    assert all("/" not in n and "\\" not in n and "\u202e" not in n for n in names), names
    assert "passwd" in names and "win.ini" in names
    stored = [p for p in (offline.settings.data_dir / "attachments").rglob("*") if p.is_file()]
    assert len(stored) == 5 and all(len(p.name) == 64 for p in stored)
    assert (
        not (tmp_path / "etc").exists()
        and not (offline.settings.data_dir.parent.parent / "etc" / "passwd").exists()
    )


def test_crlf_in_subject_never_reaches_outgoing_headers(offline: Daemon, tmp_path: Path) -> None:
    raw = (
        b"From: carol@example.org\r\nSubject: =?utf-8?q?hi=0D=0ABcc:_victim@x.com?=\r\n\r\nbody\r\n"
    )
    offline.cli("ingest", str(write_eml(tmp_path / "crlf", "a.eml", raw)))
    (row,) = offline.outbox()  # the acknowledgement ingest sent
    head = row.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head
    # an unverified sender's subject is not echoed at all; the echo of a hostile subject
    # is tests/reliability/test_outbound.py::test_r32_crlf_subject_attack_is_sent_without_bcc
    assert b"victim@x.com" not in head


@pytest.mark.parametrize("processes", [2])
def test_concurrent_writers_get_unique_ticket_numbers(
    offline: Daemon, tmp_path: Path, processes: int
) -> None:
    offline.cli("init")
    folders = []
    for worker in range(processes):
        folder = tmp_path / f"batch{worker}"
        for n in range(25):
            write_eml(
                folder,
                f"{n}.eml",
                make_mail(subject=f"w{worker} n{n}", sender=f"c{worker}-{n}@example.org"),
            )
        folders.append(folder)

    def run(folder: Path) -> str:
        data_dir = tmp_path / f"data-{folder.name}"  # separate spools, one shared database
        env_config = tmp_path / f"{folder.name}.toml"
        text = offline.config.read_text()
        own_dir = f'data_dir = "{offline.settings.data_dir}"'
        env_config.write_text(text.replace(own_dir, f'data_dir = "{data_dir}"'))
        result = postdesk(env_config, "ingest", *map(str, sorted(folder.iterdir())), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    with ThreadPoolExecutor(processes) as pool:
        list(pool.map(run, folders))
    numbers = sorted(t["number"] for t in offline.tickets())
    assert len(numbers) == 25 * processes and len(set(numbers)) == len(numbers)


@pytest.mark.parametrize(
    ("config_text", "expected"),
    [
        ("[smtp]\nlisten = 25\n", "smtp.listen"),
        ("[smtp]\nlistne = '127.0.0.1:25'\n", "unknown key 'smtp.listne'"),
    ],
)
def test_config_errors_exit_2_with_one_line(
    tmp_path: Path, config_text: str, expected: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(config_text)
    result = postdesk(config, "tickets", cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_missing_ticket_and_bad_usage_are_clear(offline: Daemon) -> None:
    missing = offline.cli("ticket", "99", check=False)
    assert (
        missing.returncode == 2
        and "no ticket 99" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    replay = offline.cli("quarantine", "replay", check=False)
    assert replay.returncode == 2 and "--all" in replay.stderr
    nothing = offline.cli("ingest", "/nonexistent/mail.eml", check=False)
    assert nothing.returncode == 2 and "does not exist" in nothing.stderr


def test_unreachable_database_is_a_runtime_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/none")
    result = postdesk(config, "tickets", cwd=tmp_path)
    assert result.returncode == 1 and "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_reports_each_endpoint(offline: Daemon, tmp_path: Path) -> None:
    result = offline.cli("check", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    database" in result.stdout and "ok    outbound" in result.stdout
    other = tmp_path / "other"
    other.mkdir()
    broken = write_config(other, f"sqlite:///{other / 'db'}", relay="smtp://127.0.0.1:1")
    result = postdesk(broken, "check", cwd=other)
    assert result.returncode == 1 and "FAIL  relay" in result.stdout


def test_every_corpus_mail_becomes_a_ticket_or_a_quarantine_record(
    tmp_path: Path, sqlite_url: str
) -> None:
    folders = [CORPUS / "zammad-mail", CORPUS / "django-helpdesk"]
    if not all(f.is_dir() for f in folders):
        pytest.skip(f"corpus not found at {CORPUS} (set POSTDESK_CORPUS)")
    files = sorted([*folders[0].glob("*.box"), *folders[1].glob("*.eml")])
    offline = Daemon(write_config(tmp_path, sqlite_url), tmp_path)
    try:
        summary = offline.cli("ingest", *map(str, files)).stdout.strip().splitlines()[-1]
        assert f"ingested {len(files)} message(s)" in summary, summary
        assert "retry" not in summary and "deferred" not in summary, "no message failed to process"
        held = offline.quarantined()
        stored = len(offline.inbound_message_ids())
        duplicates = summary.count(" duplicate") and int(
            summary.split(" duplicate")[0].rsplit(" ", 1)[-1]
        )
        assert stored + len(held) + duplicates == len(files), summary
        known = ("sender", "report about no known ticket", "MIME", "header")
        assert all(any(k in item.reason for k in known) for item in held), [h.reason for h in held]
        assert stored >= len(files) * 3 // 4, summary
    finally:
        offline.stop()


@pytest.mark.parametrize(
    "command", ["serve", "init", "ingest", "tickets", "ticket", "quarantine", "check"]
)
def test_every_command_explains_itself_with_an_example(tmp_path: Path, command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", command, "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0
    assert f"example: postdesk {command}" in result.stdout
