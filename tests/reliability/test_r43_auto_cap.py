"""R-43: an email-bomb campaign with forged requesters.

Mail from many distinct forged ``From:`` addresses (the victims), each with a spam subject and
body, must not make the helpdesk send as many acknowledgements: the hourly cap on automatic
mail to all outside addresses together (``outbound.auto_total_per_hour``) stops it, every
message is still stored as a ticket, the agents get one alert, and no acknowledgement carries
the attacker's body.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.agentmail import AGENTS, daemon_with_agents
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
