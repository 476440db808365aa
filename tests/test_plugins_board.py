"""Facts posted by the plugins process before the worker asks (plugins/board.py), over a real
Unix socket between two runners, as between the plugins process and a worker."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postdesk.daemon.config import PluginSettings, Settings
from postdesk.daemon.intake.spool import Envelope, Spool
from postdesk.daemon.mail.parse import parse_message
from postdesk.plugins import board as board_module
from postdesk.plugins.board import FactsBoard, posting
from postdesk.plugins.facts import FactsFolder, LookupKey, lookup_text
from postdesk.plugins.host import load_plugins
from postdesk.plugins.runner import PluginRunner
from tests.httpstub import Shop
from tests.support import make_mail, wait_until

CUSTOMER = "carol@example.org"


def _runner(shop: Shop, folder: FactsFolder) -> PluginRunner:
    """A runner with the order lookup against ``shop``, asking or answering through ``folder``."""
    orders = {"by_number_url": f"{shop.url}/orders/{{number}}", "fields": {"number": "id"}}
    options = {"orders_http": orders}
    plugins = PluginSettings(
        enabled=("postdesk.plugins.orders_http",), lookup_timeout_seconds=5.0, options=options
    )
    return PluginRunner(load_plugins(dataclasses.replace(Settings(), plugins=plugins)), folder)


def _spooled(spool: Spool, subject: str) -> tuple[str, LookupKey]:
    """Spool a plain-text message; its spool id and the key the worker will ask with."""
    raw = make_mail(sender=CUSTOMER, subject=subject)
    spool_id = spool.write(raw, Envelope(CUSTOMER, ("support@example.com",), "test", 0.0))
    parsed = parse_message(raw)
    return spool_id, (CUSTOMER, lookup_text(parsed.subject, parsed.new_text))


def _listening(board: FactsBoard) -> bool:
    """True once ``board`` is connected (it connects when it is first read)."""
    board._read()
    return board._socket is not None


def _posted(board: FactsBoard, count: int) -> bool:
    """True once ``count`` postings have come (read without taking them)."""
    board._read()
    return len(board._posted) >= count


def test_prefetched_facts_are_posted_and_the_worker_takes_them_without_asking(
    tmp_path: Path,
) -> None:
    """The plugins process posts what it prefetched for a plain-text message: the worker's
    lookup of that message is answered at once on its own thread (its plugins loop is never
    even started, no question is sent); a lookup with another key than the posted one asks."""
    folder = FactsFolder(tmp_path / "lookups")
    spool = Spool(tmp_path / "spool")
    with Shop() as shop:
        answering, worker = _runner(shop, folder), _runner(shop, folder)
        stop_answering = answering.start_answering()
        stop_prefetching = lambda: None  # noqa: E731
        try:
            worker.look_up_elsewhere()
            board = worker.board
            assert board is not None
            wait_until(lambda: _listening(board), what="the worker listening")
            first = _spooled(spool, "Where is order 10001?")
            second = _spooled(spool, "And order 10002?")
            stop_prefetching = answering.start_prefetching(spool.new, ())
            wait_until(lambda: _posted(board, 2), what="both postings")
            asked = len(shop.requests)

            pending = worker.lookup(CUSTOMER, first[1][1], first[0])
            assert pending is not None and pending.done(), "answered from the posting"
            assert [o["number"] for o in pending.result()["orders"]] == ["10001"]
            assert worker._loop is None, "no question asked, no thread woken"

            other = worker.lookup(CUSTOMER, "Order 10002, edited", second[0])
            assert [o["number"] for o in worker.facts(other)["orders"]] == ["10002"]
            assert worker._loop is not None, "another key than the posted one: asked"
            assert len(shop.requests) == asked, "answered from the prefetch's caches"
        finally:
            stop_prefetching()
            stop_answering()
            answering.close()
            worker.close()


def test_a_worker_listens_again_to_a_restarted_plugins_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The postings' connection ends with the plugins process; the worker connects to its
    successor and takes what that one posts. Unreadable lines are skipped, and only the newest
    ``KEPT`` postings are kept unread."""
    monkeypatch.setattr(board_module, "KEPT", 2)
    folder = FactsFolder(tmp_path / "lookups")
    spool = Spool(tmp_path / "spool")
    with Shop() as shop:
        worker = _runner(shop, folder)
        worker.look_up_elsewhere()
        board = worker.board
        assert board is not None
        try:
            for number in ("10001", "10002"):
                answering = _runner(shop, folder)
                stop_answering = answering.start_answering()
                stop_prefetching = lambda: None  # noqa: E731
                try:
                    wait_until(lambda: _listening(board))
                    assert answering.folder is not None
                    answering.submit(_post(answering.folder, b"not json\n")).result(5)
                    answering.submit(_post(answering.folder, b"[1, 2]\n")).result(5)
                    spool_id, key = _spooled(spool, f"Order {number}")
                    stop_prefetching = answering.start_prefetching(spool.new, ())
                    wait_until(lambda: _posted(board, 1), what="the posting")
                    facts = board.take(spool_id, key)
                    assert facts is not None
                    assert [o["number"] for o in facts["orders"]] == [number]
                finally:
                    stop_prefetching()
                    stop_answering()
                    answering.close()
                wait_until(lambda: not _listening(board))
                (path,) = spool.new.iterdir()
                path.unlink()  # the worker took it
        finally:
            worker.close()

    for number in range(3):
        board._keep(f'["s{number}", "d", {{}}]'.encode())
    assert list(board._posted) == ["s1", "s2"], "the oldest unread posting went first"


def test_a_posting_is_used_only_while_an_answer_would_be_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A posting read longer than FRESH_SECONDS ago (a worker stuck behind, say) is not taken:
    the worker asks, as it would once a cached answer has expired. Nor is one for another key."""
    board = FactsBoard(tmp_path / "nobody-listens.sock")
    key = (CUSTOMER, "Where is order 10001?")
    line = posting("s1", key, {"orders": [{"number": "10001"}]})
    board._keep(line.rstrip(b"\n"))
    assert board.take("s1", (CUSTOMER, "another text")) is None, "another key"
    board._keep(line.rstrip(b"\n"))
    assert board.take("s1", key) == {"orders": [{"number": "10001"}]}
    board._keep(line.rstrip(b"\n"))
    monkeypatch.setattr(board_module, "FRESH_SECONDS", 0.0)
    assert board.take("s1", key) is None, "too old"
    assert board.take("s1", key) is None, "taken (and dropped) once"


async def _post(folder: FactsFolder, *lines: bytes) -> None:
    """Post ``lines`` as they are, in one round of the plugins loop (as a shop's answers that
    came together)."""
    for line in lines:
        folder.post(line)


@contextlib.contextmanager
def _listened(tmp_path: Path) -> Iterator[tuple[FactsFolder, PluginRunner, FactsBoard]]:
    """A plugins process's runner answering over a real socket, and a worker's board that
    listens to its postings (connected once this yields)."""
    folder = FactsFolder(tmp_path / "lookups")
    with Shop() as shop:
        answering = _runner(shop, folder)
        board = FactsBoard(folder.socket)
        stop_answering = answering.start_answering()
        try:
            wait_until(lambda: _listening(board))
            wait_until(lambda: len(folder.listeners) == 1)
            yield folder, answering, board
        finally:
            stop_answering()
            board.close()
            answering.close()


def test_a_listener_too_far_behind_gets_no_more_postings(tmp_path: Path) -> None:
    """Postings are hints: a worker that does not read them (busy, or stuck) is not written to
    beyond POST_BACKLOG bytes, so the plugins process never buffers without bound."""
    with _listened(tmp_path) as (folder, answering, _board):
        line = b'["s", "d", {"x": "' + b"y" * 60_000 + b'"}]\n'
        started = time.monotonic()
        for _ in range(200):  # 12 MB, which the worker never reads
            answering.submit(_post(folder, line)).result(5)
        assert time.monotonic() - started < 10
        listeners = list(folder.listeners)
        assert len(listeners) == 1
        buffered = listeners[0].transport.get_write_buffer_size()
        assert buffered < 2 * 1024 * 1024, "stopped writing once too far behind"


def test_the_postings_of_one_round_of_the_loop_go_out_in_one_write(tmp_path: Path) -> None:
    """Answers arrive together (a shop answers a prefetch round's requests at about the same
    time): their postings reach the worker in one write, not a write (a system call) each."""
    with _listened(tmp_path) as (folder, answering, board):
        listener = next(iter(folder.listeners))
        writes: list[bytes] = []
        write = listener.write

        def counted(data: bytes) -> None:
            writes.append(data)
            write(data)

        listener.write = counted  # type: ignore[method-assign]
        lines = [posting(f"s{n}", (CUSTOMER, f"text {n}"), {"n": n}) for n in range(5)]
        answering.submit(_post(folder, *lines)).result(5)
        wait_until(lambda: _posted(board, 5))
        assert writes == [b"".join(lines)]
        assert board.take("s3", (CUSTOMER, "text 3")) == {"n": 3}
