"""The classifier itself: training, thresholds, persistence, reloading, robustness."""

from __future__ import annotations

import base64
import logging
import os
import zipfile
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from postdesk.daemon.classify import fastpath, features, judge, loader, model, persist
from postdesk.daemon.classify.metrics import category_metrics, spam_metrics
from postdesk.daemon.mail.parse import parse_message
from tests.classifymail import ham_mail, spam_mail

HAM_COUNT, SPAM_COUNT = 40, 30


def sample(raw: bytes) -> features.Sample:
    return features.from_message(parse_message(raw))


@pytest.fixture(scope="module")
def spam_model() -> model.Model:
    samples = [sample(ham_mail(n)) for n in range(HAM_COUNT)]
    samples += [sample(spam_mail(n)) for n in range(SPAM_COUNT)]
    labels = ["ham"] * HAM_COUNT + ["spam"] * SPAM_COUNT
    return model.train_spam(samples, labels, target_fpr=0.0)


def test_spam_model_separates_unseen_mail_and_records_its_training(
    spam_model: model.Model,
) -> None:
    unseen_ham = [sample(ham_mail(n)) for n in range(100, 120)]
    unseen_spam = [sample(spam_mail(n)) for n in range(100, 120)]
    ham_scores = spam_model.spam_scores(unseen_ham)
    spam_scores = spam_model.spam_scores(unseen_spam)
    assert max(ham_scores) <= spam_model.threshold < min(spam_scores)
    assert spam_model.threshold >= 0.5
    meta = spam_model.meta
    assert meta["counts"] == {"ham": HAM_COUNT, "spam": SPAM_COUNT}
    assert meta["held_back"]["ham_false_positive_rate"] == 0.0
    assert meta["target_fpr"] == 0.0


def test_one_message_path_gives_the_same_numbers_as_scikit_learn(
    spam_model: model.Model,
) -> None:
    probe = [sample(ham_mail(n)) for n in range(50, 60)] + [
        sample(spam_mail(n)) for n in range(50, 60)
    ]
    probe.append(features.from_text("", ""))  # nothing at all to read
    batch = spam_model.spam_scores(probe)
    for one, expected in zip(probe, batch, strict=True):
        assert spam_model.one(one)[2] == pytest.approx(expected, abs=1e-9)


def test_threshold_allows_at_most_the_target_share_of_held_back_ham() -> None:
    scores = [0.1] * 990 + [0.6, 0.7, 0.8, 0.9, 0.95] + [0.2] * 5 + [0.99] * 10
    labels = ["ham"] * 1000 + ["spam"] * 10
    threshold = model.choose_threshold(scores, labels, 0.002)  # 2 of 1000 ham may score above
    assert threshold == 0.8
    assert sum(s > threshold for s, lab in zip(scores, labels, strict=True) if lab == "ham") == 2
    assert model.choose_threshold([0.1, 0.2, 0.9], ["ham", "ham", "spam"], 0.0) == 0.5


def test_training_refuses_data_it_cannot_learn_from() -> None:
    one = [sample(ham_mail(n)) for n in range(4)]
    with pytest.raises(model.TrainingError, match="two classes"):
        model.train_spam(one, ["ham"] * 4)
    with pytest.raises(model.TrainingError, match="'spam' or 'ham'"):
        model.train_spam(one, ["ham", "ham", "eggs", "eggs"])


def test_saved_model_loads_with_the_same_scores_and_metadata(
    spam_model: model.Model, tmp_path: Path
) -> None:
    path = tmp_path / "models" / "spam.skops"
    persist.save(spam_model, path)
    assert [p.name for p in path.parent.iterdir()] == ["spam.skops"]  # no temporary left
    loaded = persist.load(path)
    probe = [sample(ham_mail(7)), sample(spam_mail(7))]
    assert loaded.spam_scores(probe) == pytest.approx(spam_model.spam_scores(probe))
    assert loaded.threshold == spam_model.threshold
    assert loaded.meta["versions"]["scikit-learn"]
    assert loaded.meta["counts"] == {"ham": HAM_COUNT, "spam": SPAM_COUNT}
    assert path.stat().st_size < 50_000_000
    with zipfile.ZipFile(path) as packed:  # mostly zeros: written deflated
        assert {item.compress_type for item in packed.infolist()} == {zipfile.ZIP_DEFLATED}


class Gadget:
    """Not a type a model file may hold."""


def test_loading_refuses_files_with_untrusted_types_or_garbage(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.skops"
    hostile.write_bytes(sio.dumps({"format": model.FORMAT, "kind": "spam", "x": Gadget()}))
    with pytest.raises(persist.ModelFileError, match="not trusted"):
        persist.load(hostile)
    garbage = tmp_path / "garbage.skops"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(persist.ModelFileError, match="not a readable model"):
        persist.load(garbage)
    with pytest.raises(persist.ModelFileError, match="no model"):
        persist.load(tmp_path / "absent.skops")


def test_running_cache_picks_up_a_swapped_model_and_says_once_when_there_is_none(
    spam_model: model.Model, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = loader.ModelCache(tmp_path)
    caplog.set_level(logging.WARNING, logger="postdesk.classify")
    assert cache.get("spam") is None
    cache._slots["spam"].checked_at = -10.0
    assert cache.get("spam") is None
    assert sum("no spam model" in r.getMessage() for r in caplog.records) == 1

    path = loader.model_path(tmp_path, "spam")
    persist.save(spam_model, path)
    cache._slots["spam"].checked_at = -10.0
    first = cache.get("spam")
    assert first is not None and first.threshold == spam_model.threshold

    spam_model.threshold = 0.97
    persist.save(spam_model, path)
    os.utime(path, ns=(1, 1))  # a different stamp even on a coarse clock
    cache._slots["spam"].checked_at = -10.0
    second = cache.get("spam")
    assert second is not None and second is not first and second.threshold == 0.97


def awkward_mails() -> list[bytes]:
    """HTML-only, base64, non-English and body-less mail."""
    html = EmailMessage()
    html["From"], html["Subject"] = "x@example.org", "only html"
    html.set_content("<p>Nur <b>HTML</b> hier</p>", subtype="html")
    b64 = (
        b"From: y@example.org\r\nSubject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes("Привет, мир! 你好".encode())
    )
    empty = b"From: z@example.org\r\nSubject: \r\n\r\n"
    japanese = "From: w@example.jp\r\nSubject: =?utf-8?b?5pel5pys6Kqe?=\r\n\r\n日本語のメール\r\n"
    return [html.as_bytes(), b64, empty, japanese.encode()]


def test_awkward_mail_is_featurised_and_judged(spam_model: model.Model, tmp_path: Path) -> None:
    persist.save(spam_model, loader.model_path(tmp_path, "spam"))
    cache = loader.ModelCache(tmp_path)
    for raw in awkward_mails():
        parsed = parse_message(raw)
        verdict = judge.judge(cache, parsed)
        assert verdict.spam_score is not None and 0.0 <= verdict.spam_score <= 1.0
    assert "html_only" in sample(awkward_mails()[0]).head.split()
    assert "text_empty" in sample(awkward_mails()[2]).head.split()


def test_a_failing_model_counts_as_not_spam_with_a_logged_reason(
    spam_model: model.Model,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    persist.save(spam_model, loader.model_path(tmp_path, "spam"))
    cache = loader.ModelCache(tmp_path)
    loaded = cache.get("spam")
    assert loaded is not None

    def broken(_sample: object) -> tuple[str, float, float]:
        raise ValueError("injected failure")

    monkeypatch.setattr(loaded, "one", broken)
    verdict = judge.judge(cache, parse_message(spam_mail(1)))
    assert verdict == judge.Verdict()
    assert any("counted as not spam" in r.getMessage() for r in caplog.records)


def test_header_evidence_names_sender_structure_links_and_path() -> None:
    raw = (
        b"Received: from mx.example.com (mx.example.com [192.0.2.1])\r\n"
        b"Received: from unknown (HELO bulk) (unknown [203.0.113.9])\r\n"
        b"Authentication-Results: mx.example.com; spf=fail smtp.mailfrom=x; dkim=none\r\n"
        b"From: Promo <deals77@offers.example>\r\nReply-To: a@elsewhere.example\r\n"
        b"Subject: FREE MONEY NOW\r\nX-Mailer: BulkMailer 3\r\n\r\n"
        b"Visit http://198.51.100.7/win and http://www.win.example/now\r\n"
    )
    tokens = set(features.header_tokens(parse_message(raw)))
    expected = {
        "from_dom:offers.example",
        "from_local_digits",
        "replyto_other_domain",
        "origin_unknown_rdns",
        "auth:spf=fail",
        "auth:dkim=none",
        "link_ip",
        "link_dom:win.example",
        "subject_shouting",
        "date_none",
    }
    assert expected <= tokens


def test_header_evidence_ignores_language_client_and_era() -> None:
    """A German customer's HTML mail from Outlook, in UTF-8 and quoted-printable, straight to
    us, and the same words as a 2002 mailing list's plain ASCII: the same header evidence."""
    modern = (
        b"Received: from mail.kunde.example (mail.kunde.example [192.0.2.7])\r\n"
        b"From: Jana Vogel <jana@kunde.example>\r\nDate: Mon, 3 Mar 2025 10:00:00 +0100\r\n"
        b"Message-ID: <1@kunde.example>\r\nSubject: =?utf-8?q?Anfrage_Pr=C3=A4sentation?=\r\n"
        b"X-Mailer: Microsoft Outlook 16.0\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGuten Tag, bitte um R=C3=BCckruf.\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b'<table><tr><td><font face=3D"Calibri">Guten Tag, bitte um R=C3=BCckruf.</font>'
        b'<img src=3D"cid:logo"></td></tr></table>\r\n--b--\r\n'
    )
    old = (
        b"Received: from relay.example (relay.example [192.0.2.9])\r\n"
        b"Received: from list.example (list.example [192.0.2.8])\r\n"
        b"Received: from mail.kunde.example (mail.kunde.example [192.0.2.7])\r\n"
        b"From: Jana Vogel <jana@kunde.example>\r\nDate: Mon, 3 Mar 2025 10:00:00 +0100\r\n"
        b"Message-ID: <1@kunde.example>\r\nSubject: Anfrage Praesentation\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\nGuten Tag, bitte um Rueckruf.\r\n"
    )
    modern_tokens = features.header_tokens(parse_message(modern))
    assert modern_tokens == features.header_tokens(parse_message(old))


@pytest.mark.parametrize(
    "source",
    [
        "see http://www.a.example/x and WWW.B.example, HTTPS://c.example:8080/",
        "xhttp://glued.example is no link, but (http://ok.example) is",
        "wwww.four.example www.www.example https://http.example/http://x.example",
        "İstanbul http://i̇.example www.Büro.example",  # lower-casing İ adds a character
        "httphttp://a.example http:// www. ftp://no.example",
        "",
    ],
)
def test_link_hosts_are_what_the_link_pattern_finds(source: str) -> None:
    assert features.link_hosts(source) == [m.group(1) for m in features._URL.finditer(source)]


def test_category_model_says_unknown_below_its_floor() -> None:
    texts = {
        "billing": ["I was charged twice", "refund my invoice", "wrong amount on the bill"],
        "shipping": ["parcel has not arrived", "tracking number missing", "delivery is late"],
        "login": ["cannot log in", "password reset fails", "account locked after login"],
    }
    samples, labels = [], []
    for label, items in texts.items():
        for n, text in enumerate(items * 4):
            samples.append(features.from_text("", f"{text} {n}"))
            labels.append(label)
    trained = model.train_category(samples, labels, floor=0.99)
    best, score = trained.categories([features.from_text("", "my parcel is late")])[0]
    assert best == "shipping"
    assert not trained.confident(score)  # a floor of 0.99 turns it into "unknown"
    lenient = model.train_category(samples, labels, floor=0.0)
    assert lenient.confident(lenient.categories([features.from_text("", "refund")])[0][1])
    probe = [features.from_text("", text) for text in ("refund please", "password", "late")]
    for one, (best, score) in zip(probe, trained.categories(probe), strict=True):
        fast_best, fast_score, _ = trained.one(one)
        assert fast_best == best and fast_score == pytest.approx(score, abs=1e-9)


def test_metrics_count_what_they_say() -> None:
    result = spam_metrics([0.9, 0.2, 0.8, 0.7, 0.1], ["spam", "spam", "ham", "ham", "ham"], 0.75)
    assert result["counts"] == {
        "ham": 3,
        "spam": 2,
        "true_positives": 1,
        "false_positives": 1,
        "false_negatives": 1,
        "true_negatives": 2,
    }
    assert result["precision"] == 0.5 and result["spam_recall"] == 0.5
    assert result["ham_false_positive_rate"] == pytest.approx(1 / 3, abs=1e-4)
    cats = category_metrics(["a", "b", "b"], ["a", "a", "b"], [True, False, True])
    assert cats["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert cats["coverage"] == pytest.approx(2 / 3, abs=1e-4)
    assert cats["accuracy_above_floor"] == 1.0
    assert cats["confusion"] == {"a": {"a": 1, "b": 1}, "b": {"b": 1}}


@pytest.mark.parametrize(
    "text",
    [
        "Hello, World! an a I x 42 B2B don't re-send\tMAIL\n\nnaïve Ünïcode 東京タワー ok",
        "",
        "   ",
        "a bb ccc dddd eeeee ffffff " * 3,
        "the cat the cat the the cat sat, the cat sat " * 5,
        "Re: [ticket #42] x_y A_B don't\x0b\x1fre-send\r\nMAIL @ b2b.example I a 1 _ __",
        "rzjchxgn ok estqjflz ok rzjchxgn no estqjflz",  # two words, one MurmurHash3 value
        "mixed_under_score CamelCase ÀÉÎ 😀 emoji ßtraße İstanbul",
    ],
)
def test_one_message_columns_are_the_vectorisers_counts(text: str) -> None:
    for name, hasher in model._hashers().items():
        columns, counts = fastpath.columns_for(hasher).of(text)
        expected = hasher.transform([text]).tocsr()
        expected.sum_duplicates()
        assert columns.tolist() == expected.indices.tolist(), name
        assert counts.tolist() == expected.data.tolist(), name


def test_one_token_hash_is_the_vectorisers_column_for_every_sign() -> None:
    hasher = model._hashers()["head"]
    tokens = [f"token{n}" for n in range(2000)] + ["naïve", "東京", "😀"]
    columns = fastpath.columns_for(hasher)
    matrix = hasher.transform(tokens).tocsr()
    assert [columns.column(t) for t in tokens] == matrix.indices.tolist()
    # -2**31 has no positive 32-bit counterpart: the vectoriser maps it to 2**31 % size
    assert columns.columns(np.array([-(2**31)]))[0] == 2**31 % columns.size


def test_word_memo_stays_bounded_and_keeps_giving_the_vectorisers_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fastpath, "MEMO_LIMIT", 50)
    hasher = model._hashers()["chars"]
    columns = fastpath.Columns(hasher)  # a fresh memo, not the shared one
    texts = [" ".join(f"w{n}x{k}" for k in range(30)) for n in range(20)]
    for text in texts * 2:  # the second round meets words the memo has forgotten
        found, counts = columns.of(text)
        expected = hasher.transform([text]).tocsr()
        expected.sum_duplicates()
        assert found.tolist() == expected.indices.tolist()
        assert counts.tolist() == expected.data.tolist()
    memo = columns.grams
    assert len(memo) <= 50 and len(memo.previous) <= 50


def test_every_spelling_of_a_data_dir_shares_one_model_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.chdir(tmp_path)
    cache = loader.cache_for(data)
    assert loader.cache_for(tmp_path / "data" / ".." / "data") is cache
    assert loader.cache_for(Path("data")) is cache
    assert loader.cache_for(data) is cache
