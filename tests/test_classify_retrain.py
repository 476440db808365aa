"""End to end through the real daemon: scheduled retraining and ``#category`` with model labels.

With ``[classifier] retrain_every`` set, an agent's ``#spam`` makes the daemon retrain the spam
model in the background (base data plus the label); the new file replaces the old one and the
running worker loads it with its next message. ``#category`` takes a model's multi-word label
in any case and refuses an unknown one, telling the agent which are known.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from postdesk.daemon.classify.loader import model_path
from postdesk.daemon.classify.persist import load
from tests.agentmail import ALICE, daemon_with_agents, notifications, plain_text, reply_to
from tests.classifymail import ham_mail, spam_mail, write_folder
from tests.support import SmtpSink, make_mail, send, wait_until

CATEGORY_ROWS = {
    "Technical Support": ["the app crashes on start", "cannot log in to my account"],
    "Returns and Exchanges": ["I want to return the shoes", "please exchange the jacket"],
}


def write_categories(path: Path) -> Path:
    """A small CSV table of requests labelled with multi-word categories."""
    with path.open("w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["subject", "body", "queue"])
        for label, texts in CATEGORY_ROWS.items():
            for n in range(12):
                table.writerow([f"request {n}", f"{texts[n % 2]} (order {n})", label])
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_labels_retrain_the_model_on_schedule_and_category_takes_model_labels(
    tmp_path: Path, sqlite_url: str, sink: SmtpSink
) -> None:
    ham_dir = write_folder(tmp_path / "ham", [ham_mail(n) for n in range(30)])
    spam_dir = write_folder(tmp_path / "spam", [spam_mail(n) for n in range(20)])
    table = write_categories(tmp_path / "categories.csv")
    env = {"POSTDESK_CLASSIFIER_RETRAIN_EVERY": "2s"}
    with daemon_with_agents(tmp_path, sqlite_url, sink, env=env) as daemon:
        daemon.cli("train", "spam", "--ham", str(ham_dir), "--spam", str(spam_dir))
        daemon.cli("train", "category", "--csv", str(table))
        spam_file = model_path(tmp_path / "data", "spam")
        assert spam_file.exists(), "the test's data dir is where the daemon keeps its models"
        assert load(spam_file).meta["sources"]["labels_upto"] == 0
        send(daemon.port, make_mail(subject="Printer on fire"))
        # The first message after the models appear loads scikit-learn and them: seconds.
        note = wait_until(
            lambda: notifications(sink, ALICE, 1), timeout=180, what="notification #1"
        )[0]

        commands = "#category technical SUPPORT\n#spam\n\nNoted."
        send(daemon.port, reply_to(note, commands, ALICE), sender=ALICE)
        wait_until(lambda: daemon.ticket(1)["spam"] is True, timeout=60, what="#spam")
        assert daemon.ticket(1)["category"] == "Technical Support"

        # The schedule sees the new label and retrains in its own process, from the base data
        # recorded in the model plus the label.
        retrained = wait_until(
            lambda: load(spam_file).meta["sources"]["labels_upto"] > 0 and load(spam_file),
            timeout=240,
            what="the scheduled retraining",
        )
        assert retrained.meta["counts"] == {"ham": 30, "spam": 21}
        assert "scheduled retraining: spam model: 30 ham, 21 spam (1 from agents)" in daemon.log()
        # With nothing new taught, the next rounds leave the model alone.
        stamp = spam_file.stat().st_mtime_ns

        loads = daemon.log().count("spam model loaded from")
        send(daemon.port, make_mail(subject="Second question", sender="dan@example.org"))
        wait_until(lambda: len(daemon.tickets()) == 2, timeout=120, what="ticket #2")
        wait_until(
            lambda: daemon.log().count("spam model loaded from") > loads,
            timeout=60,
            what="the worker's reload of the retrained model",
        )
        # Ticket #2 resembles #1, which taught "spam": the retrained model is the judge.
        assert daemon.ticket(2)["spam_score"] is not None

        send(daemon.port, reply_to(note, "#category nonsense\n\nOk.", ALICE), sender=ALICE)
        error = wait_until(
            lambda: [m for m in sink.to(ALICE) if "were not run" in m["Subject"]],
            timeout=60,
            what="error",
        )[0]
        assert (
            "'#category nonsense': unknown category (known: billing, outage, "
            "Returns and Exchanges, Technical Support)" in plain_text(error)
        )
        assert spam_file.stat().st_mtime_ns == stamp
