"""R-42: a flood from one sender: at most N new tickets per window, the rest as notes on the
newest open ticket, one alert to the agents, no acknowledgement surge."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.agentmail import AGENTS, daemon_with_agents
from tests.reliability.properties import SendLog, assert_p1_to_p4, scaled
from tests.support import SmtpSink, make_mail, wait_until

CAP = 5
FLOODER = "flooder@example.org"


def test_r42_flood_from_one_sender_is_capped_with_one_alert(
    tmp_path: Path, database_url: str, sink: SmtpSink
) -> None:
    total = scaled(60)
    env = {"POSTDESK_PROCESSING_FLOOD_MAX_NEW_TICKETS": str(CAP)}
    with daemon_with_agents(tmp_path, database_url, sink, env=env) as daemon:
        log = SendLog()

        def one(n: int) -> int:
            message_id = f"<flood-{n}@example.org>"
            raw = make_mail(subject=f"Distinct subject {n}", sender=FLOODER, message_id=message_id)
            return log.send(daemon.port, raw, message_id, FLOODER)

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(one, range(total))) == {250}
        figures = assert_p1_to_p4(daemon, log, timeout=180)
        print(f"R-42 figures: {figures}")
        tickets = daemon.tickets()
        assert len(tickets) == CAP, "no ticket beyond the cap"
        notes = [
            m for t in tickets for m in t["messages"] if m["direction"] == "in" and m["internal"]
        ]
        assert len(notes) == total - CAP, "everything beyond the cap is a note"
        assert sum(len(t["messages"]) for t in tickets) >= total
        wait_until(lambda: daemon.outbox() and all(r.status != "pending" for r in daemon.outbox()))
        acks = [m for m in sink.to(FLOODER)]
        assert len(acks) <= CAP, f"{len(acks)} acknowledgements: no surge beyond the cap"
        for agent in AGENTS:
            alerts = [m for m in sink.to(agent) if "Flood:" in m["Subject"]]
            assert len(alerts) == 1, f"{agent}: exactly one flood alert, got {len(alerts)}"
        assert daemon.log().count("further mail joins ticket") == 1


def test_r42_after_the_cap_with_no_open_ticket_one_ticket_and_no_ack_surge(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    env = {"POSTDESK_PROCESSING_FLOOD_MAX_NEW_TICKETS": "2"}
    with daemon_with_agents(tmp_path, sqlite_url, sink, env=env) as daemon:
        log = SendLog()
        for n in range(2):
            raw = make_mail(subject=f"s{n}", sender=FLOODER, message_id=f"<f{n}@example.org>")
            assert log.send(daemon.port, raw, f"<f{n}@example.org>", FLOODER) == 250
        wait_until(lambda: len(daemon.tickets()) == 2, what="two tickets")
        for number in (1, 2):
            daemon.update_ticket(number, status="closed")
        for n in range(2, 6):
            raw = make_mail(subject=f"s{n}", sender=FLOODER, message_id=f"<f{n}@example.org>")
            assert log.send(daemon.port, raw, f"<f{n}@example.org>", FLOODER) == 250
        assert_p1_to_p4(daemon, log)
        assert len(daemon.tickets()) == 3, "with none open, one new ticket takes the flood"
        acks = [r for r in daemon.outbox() if r.kind == "acknowledgement"]
        assert len(acks) == 2, "the last acknowledgement is under an hour old: none for the flood"
        flood_ticket = daemon.ticket(3)
        assert len(flood_ticket["messages"]) >= 4 and flood_ticket["status"] == "new"
