"""R-43: an email-bomb campaign with forged requesters.

Mail from many distinct forged ``From:`` addresses (the victims), each with a spam subject and
body, must not make the helpdesk send as many acknowledgements: the hourly cap on automatic
mail to all outside addresses together (``outbound.auto_total_per_hour``) stops it, every
message is still stored as a ticket, the agents get one alert, and no acknowledgement carries
the attacker's body. Its subject repeats the sender's only when trusted Authentication-Results
verify the sender (SPF or DMARC pass for the From domain); otherwise it is content-free.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

from tests.agentmail import AGENTS, MX, OUTSIDE, daemon_with_agents, send_via
from tests.reliability.properties import SendLog, assert_p1_to_p4, scaled
from tests.support import HELPDESK, SmtpSink, make_mail, wait_until

CAP = 8
SPAM_BODY = "Buy cheap watches at http://spam.example.net/ now! Limited offer.\n"


def test_r43_forged_senders_get_at_most_the_global_cap_of_acknowledgements(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    total = scaled(30)
    env = {"POSTDESK_OUTBOUND_AUTO_TOTAL_PER_HOUR": str(CAP)}
    with daemon_with_agents(tmp_path, database_url, sink, env=env) as daemon:
        log = SendLog()

        def one(n: int) -> int:
            victim, message_id = f"victim{n}@example.org", f"<bomb-{n}@example.org>"
            raw = make_mail(
                subject=f"WIN $$$ watches {n}", body=SPAM_BODY, sender=victim, message_id=message_id
            )
            return log.send(daemon.port, raw, message_id, victim)

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(one, range(total))) == {250}
        figures = assert_p1_to_p4(daemon, log, timeout=180)
        print(f"R-43 figures: {figures}, cap={CAP}")
        assert len(daemon.tickets()) == total, "every forged mail is still a ticket (P1)"
        wait_until(lambda: daemon.outbox() and all(r.status == "sent" for r in daemon.outbox()))
        to_victims = [
            msg for envelope, msg in sink.received if envelope.rcpt_tos[0].startswith("victim")
        ]
        assert len(to_victims) == CAP, f"{len(to_victims)} mails to victims, the cap is {CAP}"
        for ack in to_victims:
            assert "cheap watches" not in ack.as_string(), "the spam body is never echoed"
            assert ack["Auto-Submitted"] == "auto-replied"
        for agent in AGENTS:
            alerts = [m for m in sink.to(agent) if m["Subject"].startswith("Automatic mail stopp")]
            assert len(alerts) == 1, f"{agent}: exactly one alert, got {len(alerts)}"
            assert "outbound.auto_total_per_hour" in alerts[0].get_body(("plain",)).get_content()
            notified = [m for m in sink.to(agent) if "WIN $$$" in m["Subject"]]
            assert len(notified) == total, "agents still hear of every ticket"
        assert daemon.log().count("automatic mail to outside addresses stopped") == 1
        skipped = daemon.log().count("hourly cap on automatic mail to outside addresses")
        assert skipped == total - CAP, "each skipped acknowledgement is logged"
        assert all(HELPDESK not in e.rcpt_tos for e, _m in sink.received)


def _ack_to(sink: SmtpSink, address: str) -> EmailMessage:
    return wait_until(lambda: sink.to(address), what=f"acknowledgement to {address}")[0]


def test_r43_acknowledgement_echoes_the_subject_only_to_a_verified_sender(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    spam = "WIN $$$ cheap watches http://spam.example.net/"
    claims = "mx.example.com; spf=pass smtp.mailfrom={who}; dmarc=pass header.from=example.org"
    cases = [  # (sender, peer, Authentication-Results, subject echoed?)
        ("forged1@example.org", OUTSIDE, claims, False),  # not from our MX: not believed
        ("forged2@example.org", MX, "", False),
        ("forged3@example.org", MX, "mx.example.com; spf=fail smtp.mailfrom={who}", False),
        ("forged4@example.org", MX, "other.example.net; dmarc=pass header.from=example.org", False),
        (
            "forged5@example.org",
            MX,
            "mx.example.com; dmarc=pass header.from=spam.example.net",
            False,
        ),
        ("dmarc@example.org", MX, "mx.example.com; dmarc=pass header.from=example.org", True),
        ("spf@example.org", MX, "mx.example.com; spf=pass smtp.mailfrom={who}", True),
    ]
    with daemon_with_agents(tmp_path, sqlite_url, sink) as daemon:
        for number, (sender, peer, results, echoed) in enumerate(cases, start=1):
            headers = {"Authentication-Results": results.format(who=sender)} if results else {}
            raw = make_mail(subject=spam, body=SPAM_BODY, sender=sender, headers=headers)
            assert send_via(daemon.port, raw, sender, peer) == 250
            ack = _ack_to(sink, sender)
            wanted = f"[Example #{number}] " + (
                f"Re: {spam}" if echoed else "We received your request"
            )
            assert ack["Subject"] == wanted, sender
            assert "cheap watches" not in ack.get_body(("plain",)).get_content()
            assert "cheap watches" not in ack.get_body(("html",)).get_content()
            assert ack["Auto-Submitted"] == "auto-replied"
        assert [t["subject"] for t in daemon.tickets()] == [spam] * len(cases), "all stored"
