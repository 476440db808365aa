"""Lookups started from the spool before a worker asks, and facts taken when they are on their way."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import os
import re
import threading
import time
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postdesk.daemon.config import PluginSettings, Settings
from postdesk.daemon.intake.spool import Envelope, Spool
from postdesk.daemon.mail.parse import parse_message
from postdesk.plugins import order_numbers, orders_http, prefetch, runner
from postdesk.plugins.facts import lookup_text
from postdesk.plugins.host import load_plugins
from postdesk.plugins.prefetch import spooled_key
from postdesk.plugins.runner import PluginRunner
from tests.httpstub import Shop
from tests.support import make_mail, wait_until

CUSTOMER = "carol@example.org"


def _runner(shop: Shop) -> PluginRunner:
    """A runner with the order lookup against ``shop`` (by number and by email)."""
    options = {
        "orders_http": {
            "by_number_url": f"{shop.url}/orders/{{number}}",
            "by_email_url": f"{shop.url}/orders?email={{email}}",
            "list_field": "orders",
            "fields": {"number": "id"},
        }
    }
    plugins = PluginSettings(
        enabled=("postdesk.plugins.orders_http",), lookup_timeout_seconds=5.0, options=options
    )
    return PluginRunner(load_plugins(dataclasses.replace(Settings(), plugins=plugins)))


def _spool(tmp_path: Path, raw: bytes) -> tuple[Spool, Path]:
    spool = Spool(tmp_path / "spool")
    spool.write(raw, Envelope("bounce@example.net", ("support@example.com",), "test", 0.0))
    (path,) = spool.new.iterdir()
    return spool, path


def test_a_spooled_message_is_read_cheaply_for_its_sender_subject_and_body(
    tmp_path: Path,
) -> None:
    raw = make_mail(sender=f"Carol <{CUSTOMER.upper()}>", subject="Where is order 10001?")
    spool, path = _spool(tmp_path, raw)
    found = spooled_key(path)
    assert found is not None
    (email, text), _exact = found
    assert email == CUSTOMER, "the From address, not the envelope's"
    assert text.startswith(lookup_text("Where is order 10001?", ""))
    assert spooled_key(path, {CUSTOMER}) is None, "no lookups for an agent's mail"
    spool.claim()  # a worker took it: nothing to read any more
    assert spooled_key(path) is None


def test_an_encoded_subject_and_a_folded_sender_are_read_as_the_parser_reads_them(
    tmp_path: Path,
) -> None:
    subject = "Où est ma commande ? Order 10001," + " très urgent" * 8
    raw = make_mail(sender=f"Zoë Éléonore Ünderwood-Ørsted <{CUSTOMER}>", subject=subject)
    assert b"=?utf-8?" in raw and b"\n " in raw, "encoded words, folded lines"
    _unused, path = _spool(tmp_path, raw)
    found = spooled_key(path)
    assert found is not None
    key, _exact = found
    assert key[0] == CUSTOMER
    assert key[1].startswith(f"{subject}\n"), key[1][:120]


@pytest.mark.parametrize(
    ("envelope_from", "headers"),
    [("", {}), ("list@example.net", {"List-Id": "<news.example.net>"}),
     ("robot@example.net", {"Auto-Submitted": "auto-replied"})],
)  # fmt: skip
def test_automatic_mail_is_not_prefetched(
    tmp_path: Path, envelope_from: str, headers: dict[str, str]
) -> None:
    spool = Spool(tmp_path / "spool")
    raw = make_mail(subject="Re: order 10001", headers=headers)
    spool.write(raw, Envelope(envelope_from, ("support@example.com",), "smtp", 0.0))
    (path,) = spool.new.iterdir()
    assert spooled_key(path) is None


def test_prefetching_warms_the_caches_so_the_workers_question_asks_the_shop_nothing(
    tmp_path: Path,
) -> None:
    with Shop() as shop:
        plugins = _runner(shop)
        try:
            spool, _path = _spool(
                tmp_path, make_mail(sender=CUSTOMER, subject="Where is order 10001?")
            )
            stop = plugins.start_prefetching(spool.new, ())
            wait_until(lambda: len(shop.requests) == 2, what="both requests prefetched")
            asked = sorted(path for path, _auth in shop.requests)
            assert asked == ["/orders/10001", "/orders?email=carol@example.org"]
            stop()
            text = lookup_text("Where is order 10001?", "Hello,\nwhere is it?")
            facts = plugins.facts(plugins.lookup(CUSTOMER, text))
            assert [order["number"] for order in facts["orders"]] == ["10001", "10002"]
            assert len(shop.requests) == 2, "the worker's lookup was answered from the caches"
        finally:
            plugins.close()


QUOTED = "Hello,\nwhere is order 10001?\n\nOn Mon, 1 Dec 2025, Bob <bob@example.com> wrote:\n> order 999\n"


@pytest.mark.parametrize(
    ("body", "cte", "charset", "exact"),
    [
        ("Where is it?\nCarol\n", "7bit", "us-ascii", True),
        (QUOTED, "7bit", "utf-8", True),  # the reply extraction cuts the quote, as the worker's
        ("Où est ma commande 10001 ? " * 40 + "\n-- \nCarol\n", "quoted-printable", "utf-8", True),
        ("Où est ma commande 10001 ?\n", "8bit", "utf-8", True),
        ("x" * 300 + " order 10001\n", "quoted-printable", "us-ascii", True),  # soft breaks
        ("Where is order 10001?\n", "base64", "utf-8", False),  # left to the worker's parser
    ],
)
def test_a_plain_text_message_gets_the_key_the_worker_asks_with(
    tmp_path: Path, body: str, cte: str, charset: str, exact: bool
) -> None:
    """For a message that is one plain-text part (7bit, 8bit or quoted-printable; US-ASCII or
    UTF-8) the prefetch's key is exactly (sender, subject and new text) as the worker's parser
    finds them, so that the worker's question is answered from the prefetch's answer."""
    message = EmailMessage()
    message["From"] = f"Carol <{CUSTOMER}>"
    message["To"] = "support@example.com"
    message["Subject"] = "Re: =?utf-8?q?O=C3=B9?= is order 10001"
    message.set_content(body, cte=cte, charset=charset)
    raw = message.as_bytes().replace(b"\n", b"\r\n")  # as it comes over SMTP
    _unused, path = _spool(tmp_path, raw)
    found = spooled_key(path)
    assert found is not None
    parsed = parse_message(raw)
    assert found == ((CUSTOMER, lookup_text(parsed.subject, parsed.new_text)), True) or not exact
    assert found[1] is exact


def test_the_workers_question_is_answered_from_the_prefetch_of_the_same_key(
    tmp_path: Path,
) -> None:
    with Shop() as shop:
        plugins = _runner(shop)
        assert plugins.host is not None
        (orders,) = plugins.host.plugins.values()
        assert isinstance(orders, orders_http.OrdersHttp)
        calls: list[str] = []
        numbers = orders.numbers
        orders.numbers = lambda text: calls.append("postdesk_lookup_orders") or numbers(text)  # type: ignore[method-assign]
        try:
            raw = make_mail(sender=CUSTOMER, subject="Where is order 10001?")
            spool, _path = _spool(tmp_path, raw)
            stop = plugins.start_prefetching(spool.new, ())
            wait_until(lambda: len(shop.requests) == 2, what="both requests prefetched")
            stop()
            wait_until(lambda: plugins._cache, what="the prefetch's answer kept")
            assert calls == ["postdesk_lookup_orders"]
            parsed = parse_message(raw)
            key = (CUSTOMER, lookup_text(parsed.subject, parsed.new_text))
            answered = plugins.submit(_answer(plugins, key)).result(5)
            assert [order["number"] for order in answered["orders"]] == ["10001", "10002"]
            assert calls == ["postdesk_lookup_orders"], "no hook ran again for the question"
        finally:
            plugins.close()


async def _answer(plugins: PluginRunner, key: tuple[str, str]) -> dict[str, Any]:
    """What the plugins process answers a worker's question about ``key`` with."""
    return await plugins._start(key)


def test_facts_on_their_way_are_waited_for_until_a_wait_comes_back_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugins = PluginRunner()
    monkeypatch.setattr(runner, "SOON_SECONDS", 30.0)
    coming: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
    threading.Thread(target=coming.set_result, args=({"contact": {"name": "C"}},)).start()
    assert plugins.soon(coming) == {"contact": {"name": "C"}}, "waited for"

    monkeypatch.setattr(runner, "SOON_SECONDS", 0.01)
    hanging: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
    assert plugins.soon(hanging) is None, "not there within the wait: held"
    monkeypatch.setattr(runner, "SOON_SECONDS", 30.0)
    late: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
    assert plugins.soon(late) is None, "after an empty wait, no waiting (a hanging plugin)"

    ready: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
    ready.set_result({})
    assert plugins.soon(ready) == {}
    threading.Thread(target=late.set_result, args=({"orders": []},)).start()
    assert plugins.soon(late) == {"orders": []}, "an answer found ready: waiting again"
    assert plugins.soon(None) == {}, "no lookups started"


@pytest.mark.parametrize(
    "text",
    [
        "Order #10001 and order no. 10002, again ORDER 10001",
        "Bestellung: order 55-AB7 and Order ﬁve 12345",  # not ASCII: the pattern as it is
        "order\n  number: 777 and orders",
        "order\x1c12345 and ORDER\x1f#B-456",  # separators a Unicode \s matches
        "Bestellnummer: 4711, Bestell-Nr. 4712 and commande no 4713",
        "pedido 10001, ORDINE N. 10002, objednavka cislo 10003, siparis numarasi 10004",
        "Заказ № 10001, zamówienie nr 10002, numéro de commande 10003",  # not ASCII
    ],
)
def test_order_numbers_in_ascii_text_are_found_as_the_pattern_finds_them(text: str) -> None:
    with Shop() as shop:
        options = {"by_number_url": f"{shop.url}/orders/{{number}}"}
        from postdesk.plugins.host import PluginContext

        plugin = orders_http.create_plugin(PluginContext("orders_http", Settings(), options, None))
        expected = []
        for match in re.finditer(order_numbers.DEFAULT_PATTERN, text):
            if match.group(1) not in expected:
                expected.append(match.group(1))
        assert plugin.numbers(text) == expected[: plugin.settings.max_orders]


# Pieces of text around the default order pattern: its words in any case and language, near
# misses, the markers and separators it allows, digits, and non-ASCII letters and digits (the
# pattern itself is searched then). Texts of ASCII pieces alone, half of them, take the
# lower-cased search.
PIECES = ("order", "ORDER", "Order", "orders", "border", "0rder", "no", "No.", "number")
PIECES += ("x", "1", "42", "A7", "9-", " ", "\n", "\t", "-", "_", "#", ":", ".")
PIECES += ("\x1c", "\x1f")  # spaces to a Unicode \s (the default's), not to an ASCII one
PIECES += ("Bestellung", "BESTELL", "bestelling", "Auftrags", "commande", "Pedido", "ordine")
PIECES += ("orden", "encomenda", "zamowienia", "objednavky", "SIPARIS", "bestallnings")
PIECES += ("ordre", "Bestilling", "tilaus", "TILAUKSEN", "comanda", "comenzii", "pesanan")
PIECES += ("is", " IS ", "ist", "er", "on")
PIECES += ("x" * 13, "B-" * 7)  # runs long enough to reach past a number's 40 after its digit
PIECES += ("reorder", "nr", "Nr.", "N.", "nummer", "numero", "ID", "cislo", "numarasi", "NUMARASI")
NON_ASCII = ("é", "zamówienie", "objednávka", "sipariş", "İ", "numarası", "beställning")  # noqa: RUF001
NON_ASCII += ("Заказ", "замовлення", "номер", "numéro", "№", "n°", "nº", "č.", "ſ", "٣")  # noqa: RUF001
NON_ASCII += ("注文", "番号", "订单", "号", "주문", "번호", "：", "παραγγελία", "đơn hàng", "số")  # noqa: RUF001
NON_ASCII += ("är", "comandă")


LONG_OPENING = "Hello, I wrote about this before. " * 40  # searched to its end: no digit


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.lists(st.sampled_from(PIECES), max_size=30),
        st.lists(st.sampled_from(PIECES + NON_ASCII), max_size=30),
    ).map("".join)
)
def test_the_default_pattern_finds_the_same_numbers_on_any_text(text: str) -> None:
    """numbers() searches ASCII text lower-cased with a twin of DEFAULT_PATTERN: it must find
    exactly what the pattern itself finds."""
    from postdesk.plugins.host import PluginContext

    options = {"by_number_url": "http://shop.invalid/orders/{number}", "max_orders": 100}
    plugin = orders_http.create_plugin(PluginContext("orders_http", Settings(), options, None))
    for searched in (text, LONG_OPENING + text):  # a long text is cut after its last number
        expected: list[str] = []
        for match in re.finditer(order_numbers.DEFAULT_PATTERN, searched):
            if match.group(1) not in expected:
                expected.append(match.group(1))
        assert plugin.numbers(searched) == expected


@pytest.mark.parametrize("tail", [37, 38, 39, 40, 41, 42])
@pytest.mark.parametrize("after", ["", " and more text", "-and-more", "x" * 60])
def test_a_number_at_the_end_of_its_run_is_found_as_the_pattern_finds_it(
    tail: int, after: str
) -> None:
    """The search of a long ASCII text stops 41 characters after its last digit (no number
    runs further); a run of about that length right at the end is found, or not, as the
    pattern itself finds it."""
    from postdesk.plugins.host import PluginContext

    run_after_digit = f"{{2,{order_numbers._NUMBER_TAIL}}}+"  # what the cut is made from
    assert run_after_digit in order_numbers.DEFAULT_PATTERN
    assert all(run_after_digit in twin.pattern for twin in order_numbers._DEFAULT_LOWERED.values())
    text = LONG_OPENING + "my order 1" + "B" * tail + after
    options = {"by_number_url": "http://shop.invalid/orders/{number}"}
    plugin = orders_http.create_plugin(PluginContext("orders_http", Settings(), options, None))
    expected = [m.group(1) for m in re.finditer(order_numbers.DEFAULT_PATTERN, text)]
    assert plugin.numbers(text) == expected
    run = tail + len(re.match(r"[A-Za-z0-9-]*", after).group())  # type: ignore[union-attr]
    assert expected == (["1" + "B" * tail] if run <= 40 else [])  # the case is a boundary one


@pytest.mark.parametrize(
    "text", ["REF\x1c4711 and ref 42", "ref\x1f 99, ref\t7", "Ref 4711, réf 42, REF\x1e7"]
)
def test_a_pattern_of_ones_own_finds_in_ascii_text_what_it_finds_itself(text: str) -> None:
    """A configured pattern is searched in ASCII text by an ASCII twin, except in text with
    the separators that only the pattern's own (Unicode) \\s matches."""
    from postdesk.plugins.host import PluginContext

    pattern = r"(?i)\bref\s*(\d+)"
    options = {"by_number_url": "http://shop.invalid/{number}", "pattern": pattern}
    plugin = orders_http.create_plugin(PluginContext("orders_http", Settings(), options, None))
    assert plugin.numbers(text) == re.findall(pattern, text)


def test_an_idle_spool_is_listed_again_only_once_something_comes_or_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listings: list[float] = []
    listing = prefetch._new_keys

    def counted(*args: Any) -> list[Any]:
        listings.append(time.monotonic())
        return listing(*args)

    monkeypatch.setattr(prefetch, "_new_keys", counted)
    monkeypatch.setattr(prefetch, "POLL_SECONDS", 0.01)
    (tmp_path / "old").touch()
    os.utime(tmp_path, ns=(time.time_ns() - 10**9,) * 2)  # a spool last changed a second ago

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, (tmp_path / "new").touch)  # a message comes
        loop.call_later(0.6, stop.set)
        await prefetch.prefetch_spooled(tmp_path, lambda *_args: asyncio.Future(), stop)

    asyncio.run(scenario())
    assert listings[0] < listings[1] - 0.25, "nothing listed again while nothing changed"
    settled = listings[1] + prefetch.SETTLED_NS / 1e9 + 0.1  # then only its mtime is looked at
    assert all(at < settled for at in listings[1:]), "listed again once it changed, until settled"


def test_a_spool_slow_to_list_is_listed_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing a long backlog is costly: each round rests REST_FACTOR times its own duration,
    not just the rest of POLL_SECONDS (which alone would allow about 12 rounds here)."""
    rounds: list[float] = []

    def slow_listing(*_args: Any) -> prefetch.Listing:
        rounds.append(time.monotonic())
        (tmp_path / str(len(rounds))).touch()  # a new message each time: listed again
        time.sleep(0.04)  # as listing and sorting ~50,000 waiting files takes
        return prefetch.Listing([], 0, 0)

    monkeypatch.setattr(prefetch, "_new_keys", slow_listing)

    async def scenario() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        await prefetch.prefetch_spooled(tmp_path, lambda *_args: asyncio.Future(), stop)

    asyncio.run(scenario())
    assert 1 <= len(rounds) <= 4, rounds


def test_a_backlog_beyond_the_window_is_listed_again_only_as_the_workers_take_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than AHEAD messages wait and more keep coming, but no worker takes any: the
    arrivals queue behind the window, so the listings back off (0.05, 0.1, 0.2, ... s) instead
    of following every arrival (about 20 listings in this second at POLL_SECONDS)."""
    monkeypatch.setattr(prefetch, "AHEAD", 4)
    for number in range(10):
        (tmp_path / f"{number:020d}-old.0.msg").touch()
    listings: list[float] = []
    listing = prefetch._new_keys

    def counted(*args: Any) -> prefetch.Listing:
        listings.append(time.monotonic())
        return listing(*args)

    monkeypatch.setattr(prefetch, "_new_keys", counted)
    arrivals = iter(range(100, 200))

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def arrive() -> None:
            (tmp_path / f"{next(arrivals):020d}-new.0.msg").touch()
            if not stop.is_set():
                loop.call_later(0.02, arrive)

        arrive()
        loop.call_later(1.0, stop.set)
        await prefetch.prefetch_spooled(tmp_path, lambda *_args: asyncio.Future(), stop)

    asyncio.run(scenario())
    assert 3 <= len(listings) <= 7, listings
    gaps = [later - earlier for earlier, later in itertools.pairwise(listings)]
    assert gaps == sorted(gaps), "each rest twice the one before"


@pytest.mark.parametrize(
    ("waiting", "claimed", "since", "rest"),
    [
        (100, 0, 0.3, 0.0),  # all within the window: every arrival is the next to warm
        (1000, 16, 0.05, prefetch.REFILL * 0.05 / 16),  # taken at 320/s: a REFILL's worth
        (1000, 1, 0.5, prefetch.MAX_REST),  # a slow worker: at most MAX_REST
        (1000, 0, 0.2, 0.4),  # none taken: twice as long
        (1000, 0, 5.0, prefetch.MAX_REST),
    ],
)
def test_a_full_window_rests_until_about_a_refill_of_it_was_taken(
    waiting: int, claimed: int, since: float, rest: float
) -> None:
    listing = prefetch.Listing([], waiting, claimed)
    assert prefetch._refill_wait(listing, since) == pytest.approx(rest)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='ab.@<> ",;:()\\\tZë', max_size=24))
def test_the_from_address_is_read_as_parseaddr_reads_it(field: str) -> None:
    assert prefetch._address(field) == parseaddr(field)[1].lower()


@pytest.mark.parametrize(
    "field",
    ["a@b.c", " Carol <A@B.org> ", '"Smith, C" <c@x.org>', "c@x.org (Carol)", "Carol <c@x.org",
     "a <b@c> d", "Zoë <z@x.org>", "group: a@b.c;"],
)  # fmt: skip
def test_common_from_fields_give_parseaddrs_address(field: str) -> None:
    assert prefetch._address(field) == parseaddr(field)[1].lower()
