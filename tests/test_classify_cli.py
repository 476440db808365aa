"""``postdesk train``, ``evaluate``, ``classify`` and ``check`` as a user runs them."""

from __future__ import annotations

import csv
import gzip
import io
import json
import mailbox
import subprocess
import sys
import tarfile
import zipfile
from email import message_from_bytes
from pathlib import Path

import pytest

from tests.classifymail import ham_mail, spam_mail, write_folder
from tests.support import write_config

# Each command that trains or loads a model imports scikit-learn: seconds on a busy machine.
pytestmark = pytest.mark.timeout(900)


def postdesk(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point."""
    return subprocess.run(
        [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str) -> Path:
    return write_config(tmp_path, sqlite_url)


def mail_sources(tmp_path: Path) -> tuple[list[str], list[str]]:
    """Ham as a folder of files (with mbox From lines) and a Maildir; spam as an mbox file."""
    ham_dir = write_folder(tmp_path / "ham", [ham_mail(n) for n in range(30)], mbox_line=True)
    maildir = mailbox.Maildir(tmp_path / "ham-maildir", create=True)
    for n in range(30, 40):
        maildir.add(ham_mail(n))
    spam_box = mailbox.mbox(tmp_path / "spam.mbox", create=True)
    for n in range(30):
        spam_box.add(spam_mail(n))
    spam_box.close()
    return [str(ham_dir), str(tmp_path / "ham-maildir")], [str(tmp_path / "spam.mbox")]


@pytest.mark.slow
def test_train_evaluate_classify_and_check(config: Path, tmp_path: Path) -> None:
    before = postdesk(config, "check")
    assert "spam model: none at" in before.stdout and before.returncode == 0

    ham, spam = mail_sources(tmp_path)
    trained = postdesk(config, "train", "spam", "--ham", *ham, "--spam", *spam)
    assert trained.returncode == 0, trained.stderr
    assert "spam model: 40 ham, 30 spam" in trained.stdout
    model_file = tmp_path / "data" / "models" / "spam.skops"
    assert model_file.is_file()

    unseen = tmp_path / "unseen"
    write_folder(unseen / "ham", [ham_mail(n) for n in range(200, 215)])
    write_folder(unseen / "spam", [spam_mail(n) for n in range(200, 215)])
    result = postdesk(
        config,
        "evaluate",
        "spam",
        "--ham",
        str(unseen / "ham"),
        "--spam",
        str(unseen / "spam"),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    for key in ("precision", "recall", "f1", "ham_false_positive_rate", "spam_recall", "counts"):
        assert key in metrics
    assert metrics["counts"]["ham"] == 15 and metrics["counts"]["spam"] == 15
    assert metrics["ham_false_positive_rate"] == 0.0 and metrics["spam_recall"] == 1.0

    verdict = json.loads(
        postdesk(
            config, "classify", str(unseen / "spam" / "0000.eml"), "--json", "--explain"
        ).stdout
    )
    assert verdict["spam"] is True and verdict["spam_score"] > 0.5
    assert verdict["category"] is None and verdict["category_score"] is None
    assert verdict["explain"] and all(item["weight"] for item in verdict["explain"])
    ham_verdict = json.loads(
        postdesk(config, "classify", str(unseen / "ham" / "0000.eml"), "--json").stdout
    )
    assert ham_verdict["spam"] is False

    after = postdesk(config, "check")
    assert "ok    spam model: trained" in after.stdout and "threshold" in after.stdout


def test_train_and_evaluate_category_from_csv(config: Path, tmp_path: Path) -> None:
    table = tmp_path / "tickets.csv"
    topics = {
        "Billing": ["charged twice", "refund my invoice", "wrong amount billed"],
        "Shipping": ["parcel not arrived", "tracking number missing", "late delivery"],
    }
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "body", "queue"])
        for queue, texts in topics.items():
            for n in range(12):
                writer.writerow([texts[n % 3], f"{texts[(n + 1) % 3]}, order {n}", queue])
        handle.write('"cut off mid-row,')  # a last row that does not parse is dropped
    trained = postdesk(
        config,
        "train",
        "category",
        "--csv",
        str(table),
        "--text",
        "subject,body",
        "--label",
        "queue",
    )
    assert trained.returncode == 0, trained.stderr
    assert "24 examples, 2 categories" in trained.stdout
    result = postdesk(config, "evaluate", "category", "--csv", str(table), "--json")
    metrics = json.loads(result.stdout)
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert metrics["confusion"] == {"Billing": {"Billing": 12}, "Shipping": {"Shipping": 12}}
    text = postdesk(config, "evaluate", "category", "--csv", str(table))
    assert "confusion (rows: true, columns: predicted):" in text.stdout


def test_train_and_evaluate_spam_from_a_csv_table(config: Path, tmp_path: Path) -> None:
    """A spam table as public datasets give them: one text column, the label as 1/0."""
    table = tmp_path / "emails.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "spam"])
        for n in range(30):
            ham = message_from_bytes(ham_mail(n))
            spam = message_from_bytes(spam_mail(n))
            writer.writerow([f"Subject: {ham['Subject']}  {ham.get_payload()}", "0"])
            writer.writerow([f"Subject: {spam['Subject']}  act now, click here {n}", "1"])
    args = ("--csv", str(table), "--text", "text", "--label", "spam")
    trained = postdesk(config, "train", "spam", *args)
    assert trained.returncode == 0, trained.stderr
    assert "spam model: 30 ham, 30 spam" in trained.stdout
    metrics = json.loads(postdesk(config, "evaluate", "spam", *args, "--json").stdout)
    assert metrics["counts"]["ham"] == 30 and metrics["counts"]["spam"] == 30
    assert metrics["f1"] == 1.0
    again = postdesk(config, "train", "spam", "--with-feedback")  # reads the same table again
    assert "spam model: 30 ham, 30 spam (0 from agents)" in again.stdout, again.stderr
    with table.open("a", newline="") as handle:
        csv.writer(handle).writerow(["Is this spam?", "maybe"])
    refused = postdesk(config, "train", "spam", *args)
    assert refused.returncode == 2
    assert "column 'spam': 'maybe' is neither spam nor ham" in refused.stderr


def test_train_from_archives_as_corpora_are_published(config: Path, tmp_path: Path) -> None:
    """Ham as a tar.bz2 of a folder (with a hidden file) and a gzipped mbox, spam as a zip."""
    with tarfile.open(tmp_path / "easy_ham.tar.bz2", "w:bz2") as archive:
        for n in range(20):
            data = ham_mail(n)
            member = tarfile.TarInfo(f"easy_ham/{n:05d}.eml")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
        hidden = tarfile.TarInfo("easy_ham/.DS_Store")
        archive.addfile(hidden, io.BytesIO(b""))
    box = mailbox.mbox(tmp_path / "more-ham.mbox", create=True)
    for n in range(20, 30):
        box.add(ham_mail(n))
    box.close()
    (tmp_path / "more-ham.mbox.gz").write_bytes(
        gzip.compress((tmp_path / "more-ham.mbox").read_bytes())
    )
    with zipfile.ZipFile(tmp_path / "spam.zip", "w") as archive:
        for n in range(30):
            archive.writestr(f"spam/{n:05d}.eml", spam_mail(n))
    trained = postdesk(
        config,
        "train",
        "spam",
        "--ham",
        str(tmp_path / "easy_ham.tar.bz2"),
        str(tmp_path / "more-ham.mbox.gz"),
        "--spam",
        str(tmp_path / "spam.zip"),
    )
    assert trained.returncode == 0, trained.stderr
    assert "spam model: 30 ham, 30 spam" in trained.stdout


def test_mistakes_are_one_line_errors(config: Path, tmp_path: Path) -> None:
    ham = write_folder(tmp_path / "some-ham", [ham_mail(n) for n in range(3)])
    whole = gzip.compress(b"From a@b Sat Jan  1 00:00:00 2000\n" + ham_mail(0) * 50)
    (tmp_path / "cut.mbox.gz").write_bytes(whole[: len(whole) // 2])  # a download cut short
    with zipfile.ZipFile(tmp_path / "spam.zip", "w") as archive:
        archive.writestr("spam/1.eml", spam_mail(1) * 50)
    zipped = (tmp_path / "spam.zip").read_bytes()
    (tmp_path / "broken.zip").write_bytes(zipped[:30] + b"\0" * 40 + zipped[70:])
    cases = [
        (
            ("train", "spam", "--ham", str(tmp_path / "cut.mbox.gz"), "--spam", str(ham)),
            "cut.mbox.gz",
        ),
        (
            ("train", "spam", "--ham", str(ham), "--spam", str(tmp_path / "broken.zip")),
            "broken.zip",
        ),
        (("train", "spam", "--ham", str(tmp_path)), "give both --ham"),
        (
            ("train", "spam", "--ham", str(tmp_path / "nope"), "--spam", str(tmp_path)),
            "does not exist",
        ),
        (("train", "category"), "give --csv FILE"),
        (("classify", str(tmp_path / "nope.eml")), "nope.eml"),
        (("evaluate", "spam", "--ham", str(tmp_path), "--spam", str(tmp_path)), "no model at"),
    ]
    for args, expected in cases:
        result = postdesk(config, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, args
