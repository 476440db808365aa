"""The built-in plugins on their own: order lookup against a loopback shop, webhook delivery
against a loopback receiver, and the CRM's contact import (CSV and XLSX)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import event, select

from postdesk.daemon.config import ConfigError, Settings
from postdesk.daemon.store.db import make_engine, session_factory, transaction, upgrade_schema
from postdesk.models.webhooks import WebhookDelivery
from postdesk.plugins import crm, notify_webhook, orders_http
from postdesk.plugins.crm.importer import import_contacts
from postdesk.plugins.host import PluginContext
from postdesk.plugins.httppool import HttpPool
from postdesk.plugins.notify_webhook import delivery
from postdesk.plugins.snapshots import freeze
from tests.httpstub import Receiver, Shop
from tests.support import count_tasks, wait_until

PERSONAL = frozenset(crm.PERSONAL_DOMAINS)


def _context(name: str, options: dict[str, Any], database: str | None = None) -> PluginContext:
    factory = None
    if database is not None:
        engine = make_engine(database)
        upgrade_schema(engine)
        factory = session_factory(engine)
    return PluginContext(name, Settings(), options, factory)


def _orders(shop: Shop, **extra: Any) -> orders_http.OrdersHttp:
    options = {
        "by_number_url": f"{shop.url}/orders/{{number}}",
        "by_email_url": f"{shop.url}/orders?email={{email}}",
        "list_field": "orders",
        "fields": {"number": "id", "status": "state", "total": "total.amount"},
        **extra,
    }
    return orders_http.create_plugin(_context("orders_http", options))


def test_orders_by_number_and_by_email_mapped_and_cached() -> None:
    with Shop() as shop:
        plugin = _orders(shop, timeout_seconds=1.0)
        assert plugin.numbers("Order #10001 and order no. 10002, again order 10001") == [
            "10001",
            "10002",
        ]

        async def twice() -> list[Any]:
            first = await plugin.postdesk_lookup_orders(
                "carol@example.org", "where is order 10001?"
            )
            second = await plugin.postdesk_lookup_orders(
                "carol@example.org", "where is order 10001?"
            )
            return [first, second]

        first, second = asyncio.run(twice())
        assert first == [
            {"number": "10001", "status": "shipped", "total": "49.90"},
            {"number": "10002", "status": "processing", "total": "5.00"},
        ]
        assert second == first and len(shop.requests) == 2, "the second lookup is cached"
        assert asyncio.run(plugin.postdesk_lookup_orders("x@example.org", "order 99999")) is None
        asyncio.run(plugin.aclose())


def test_orders_requests_are_shared_past_a_cut_off_caller_and_cached_ones_cost_no_task() -> None:
    with Shop() as shop:
        plugin = _orders(shop, timeout_seconds=1.0)

        async def scenario() -> tuple[Any, int]:
            created = count_tasks(asyncio.get_running_loop())
            text = "where is order 10001?"
            cut_off = asyncio.create_task(plugin.postdesk_lookup_orders("carol@example.org", text))
            await asyncio.sleep(0)  # its requests are on their way
            cut_off.cancel()  # a caller's timeout must not cancel the requests others share
            answer = await plugin.postdesk_lookup_orders("carol@example.org", text)
            created.clear()
            assert await plugin.postdesk_lookup_orders("carol@example.org", text) == answer
            return answer, len(created)

        answer, tasks = asyncio.run(scenario())
        assert answer == [
            {"number": "10001", "status": "shipped", "total": "49.90"},
            {"number": "10002", "status": "processing", "total": "5.00"},
        ]
        assert len(shop.requests) == 2, "each URL asked once"
        assert tasks == 0, "a cached lookup runs in the caller's task"
        asyncio.run(plugin.aclose())


def test_orders_from_a_hanging_or_failing_shop_cost_at_most_the_timeout() -> None:
    with Shop() as shop:
        shop.hang = True
        plugin = _orders(shop, timeout_seconds=0.3)
        started = time.monotonic()
        assert (
            asyncio.run(plugin.postdesk_lookup_orders("carol@example.org", "order 10001")) is None
        )
        assert time.monotonic() - started < 1.5
    with Shop(token="right") as shop:  # 401 without the token: logged, no orders
        plugin = _orders(shop)
        assert asyncio.run(plugin.postdesk_lookup_orders("a@b.cd", "order 10001")) is None
        asyncio.run(plugin.aclose())


def test_orders_ask_the_shop_at_most_max_requests_at_once() -> None:
    """Lookups of many messages at once share the bound on the shop: ``max_requests``."""
    with Shop(delay=0.3) as shop:
        shop.orders.update({f"3000{n}": {"id": f"3000{n}"} for n in range(6)})
        plugin = _orders(shop, timeout_seconds=5.0, max_requests=3)

        async def burst() -> list[Any]:
            return await asyncio.gather(
                *(
                    plugin.postdesk_lookup_orders(f"c{n}@example.org", f"order 3000{n}")
                    for n in range(6)
                )
            )

        answers = asyncio.run(burst())
        assert [[o["number"] for o in answer] for answer in answers] == [
            [f"3000{n}"] for n in range(6)
        ]
        assert len(shop.requests) == 12, "by number and by email, each message"
        assert shop.most_at_once == 3
        asyncio.run(plugin.aclose())


def test_orders_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.orders_http\.pattern"):
        orders_http.create_plugin(
            _context("orders_http", {"by_number_url": "http://s/{number}", "pattern": "("})
        )
    with pytest.raises(ConfigError, match="by_number_url"):
        orders_http.create_plugin(_context("orders_http", {"by_number_url": "http://s/orders"}))
    with pytest.raises(ConfigError, match="max_requests must be greater than 0"):
        orders_http.create_plugin(
            _context("orders_http", {"by_number_url": "http://s/{number}", "max_requests": 0})
        )
    with pytest.raises(ConfigError, match="SHOP_SECRET"):
        orders_http.create_plugin(
            _context(
                "orders_http", {"by_number_url": "http://s/{number}", "token_env": "SHOP_SECRET"}
            )
        )
    monkeypatch.setenv("SHOP_SECRET", "abc\r\nX-Evil: 1")  # would add a header line
    with pytest.raises(ConfigError, match="SHOP_SECRET holds a control"):
        orders_http.create_plugin(
            _context(
                "orders_http", {"by_number_url": "http://s/{number}", "token_env": "SHOP_SECRET"}
            )
        )
    with pytest.raises(ConfigError, match=r"plugins\.orders_http\.colour"):
        orders_http.create_plugin(_context("orders_http", {"colour": "red"}))


def _webhook(tmp_path: Path, receiver: Receiver, **extra: Any) -> notify_webhook.NotifyWebhook:
    options = {
        "urls": [f"{receiver.url}/hook"],
        "secret": "s3cret",
        "retry_base_seconds": 0.05,
        **extra,
    }
    return notify_webhook.create_plugin(
        _context("notify_webhook", options, f"sqlite:///{tmp_path / 'pd.db'}")
    )


def _deliver_until(plugin: notify_webhook.NotifyWebhook, done: Any, rounds: int = 40) -> None:
    async def loop() -> None:
        senders = HttpPool(2, plugin.settings.timeout_seconds)
        try:
            for _ in range(rounds):
                await plugin.deliverer.deliver_due(senders)
                if done():
                    return
                await asyncio.sleep(0.1)
        finally:
            senders.close()

    asyncio.run(loop())


def test_webhooks_survive_a_receiver_outage_and_are_signed(tmp_path: Path) -> None:
    ticket = freeze({"number": 7, "tag": "[Example #7]", "subject": "Hi", "status": "open"})
    with Receiver(fail_first=3) as receiver:
        plugin = _webhook(tmp_path, receiver)

        async def notify() -> None:
            await plugin.postdesk_notify("ticket.created", ticket, freeze({}), "e1")
            await plugin.postdesk_notify(
                "alert.quarantined", None, freeze({"reason": "too deep"}), "e2"
            )
            await plugin.flush()

        asyncio.run(notify())
        _deliver_until(plugin, lambda: len(receiver.received) == 2)
    assert sorted(receiver.events()) == ["alert.quarantined", "ticket.created"]
    for headers, body in receiver.received:
        digest = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["X-Postdesk-Signature"] == f"sha256={digest}"
    document = next(json.loads(b) for _h, b in receiver.received if b"ticket.created" in b)
    assert document["ticket"]["number"] == 7
    assert document["id"] == "e1", "the event_id rides in the body: receivers can deduplicate"
    assert plugin.deliverer.counts["retried"] == 3 and plugin.deliverer.counts["sent"] == 2


def test_a_hanging_receiver_is_retried_and_loses_nothing(tmp_path: Path) -> None:
    with Receiver() as receiver:
        receiver.hang = True
        plugin = _webhook(tmp_path, receiver, timeout_seconds=0.3, format="slack")
        detail = freeze({"reason": "550 no such user"})

        async def notify() -> None:
            await plugin.postdesk_notify("alert.relay_refused", None, detail, "e1")
            await plugin.flush()

        asyncio.run(notify())
        _deliver_until(plugin, lambda: plugin.deliverer.counts["retried"] >= 1, rounds=10)
        with plugin.factory() as session:
            row = session.scalars(select(WebhookDelivery)).one()
            assert row.status == "pending" and "Timeout" in row.last_error
        receiver.hang = False
        _deliver_until(plugin, lambda: receiver.received, rounds=60)
    body = json.loads(receiver.received[0][1])
    assert body == {"text": "*alert.relay_refused* reason: 550 no such user"}


def test_webhooks_go_over_a_few_kept_alive_connections_one_info_line_a_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Receiver() as receiver:
        plugin = _webhook(tmp_path, receiver)

        async def notify() -> None:
            for number in range(30):
                ticket = freeze({"number": number, "subject": "Hi", "status": "open"})
                await plugin.postdesk_notify("ticket.created", ticket, freeze({}), f"e{number}")
            await plugin.flush()

        asyncio.run(notify())
        with caplog.at_level(logging.INFO, logger="postdesk.plugins.notify_webhook"):
            _deliver_until(plugin, lambda: len(receiver.received) == 30)
    assert len(receiver.received) == 30
    assert len(receiver.connections) <= delivery.SENDERS, "connections are kept and reused"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert lines == ["webhook round: 30 delivered, 0 not"], "each delivery is logged at DEBUG"


def test_sent_webhook_rows_are_purged_after_keep_sent_days_failed_ones_kept(
    tmp_path: Path,
) -> None:
    with Receiver() as receiver:
        plugin = _webhook(tmp_path, receiver, keep_sent_days=2, max_attempts=1)

        async def notify() -> None:
            for number in range(3):
                ticket = freeze({"number": number, "subject": "Hi", "status": "open"})
                await plugin.postdesk_notify("ticket.created", ticket, freeze({}), f"e{number}")
            await plugin.flush()

        asyncio.run(notify())
        _deliver_until(plugin, lambda: len(receiver.received) == 3)
        receiver.hang = True  # the next row fails for good (one attempt) and must stay
        plugin = _webhook(tmp_path, receiver, keep_sent_days=2, max_attempts=1, timeout_seconds=0.2)

        async def alert() -> None:
            await plugin.postdesk_notify("alert.quarantined", None, freeze({"reason": "x"}), "e9")
            await plugin.flush()

        asyncio.run(alert())
        _deliver_until(plugin, lambda: plugin.deliverer.counts["failed"] == 1)
    with transaction(plugin.factory) as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        assert [row.status for row in rows] == ["sent", "sent", "sent", "failed"]
        assert all(row.attempts == 1 and row.claimed_until is None for row in rows)
        now = rows[0].sent_at
        assert now is not None
        rows[0].sent_at = now - timedelta(days=3)  # older than keep_sent_days
        rows[1].sent_at = now - timedelta(days=1)
        rows[3].created_at = now - timedelta(days=30)
    assert plugin.deliverer.purge() == 1
    with plugin.factory() as session:
        left = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        assert [(row.id, row.status) for row in left] == [(2, "sent"), (3, "sent"), (4, "failed")]
    with pytest.raises(ConfigError, match=r"plugins\.notify_webhook\.keep_sent_days"):
        _webhook(tmp_path, receiver, keep_sent_days=-1)


def test_webhook_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.notify_webhook\.urls"):
        notify_webhook.create_plugin(_context("notify_webhook", {"secret": "x"}))
    with pytest.raises(ConfigError, match=r"plugins\.notify_webhook\.secret"):
        notify_webhook.create_plugin(_context("notify_webhook", {"urls": ["http://h/"]}))
    with pytest.raises(ConfigError, match=r"plugins\.notify_webhook\.format"):
        notify_webhook.create_plugin(
            _context("notify_webhook", {"urls": ["http://h/"], "secret": "x", "format": "xml"})
        )


def _import(tmp_path: Path, path: Path, region: str = "RU") -> tuple[Any, list[dict[str, Any]]]:
    context = _context("crm", {}, f"sqlite:///{tmp_path / 'crm.db'}")
    factory = context.database()
    with transaction(factory) as session:
        report = import_contacts(session, path, region, PERSONAL)
    from postdesk.plugins.crm.records import all_cards

    with factory() as session:
        return report, all_cards(session)


def test_contacts_import_csv_merges_normalises_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "E-mail;First Name;Last Name;Organisation;Telephone;Plan\n"
        "ivan@acme.ru;Ivan;Petrov;ACME;+7 (495) 123-45-67;Gold\n"
        "IVAN@ACME.RU;;;;8 495 123 45 67;\n"
        "not-an-address;X;;;;\n"
        ";Nobody;;;;\n"
        "olga@gmail.com;Olga;;ACME;12;\n"
        "petr@acme.ru;Petr;;;;\n",
        encoding="utf-8",
    )
    report, cards = _import(tmp_path, path)
    assert (report.created, report.merged) == (3, 1)
    assert report.problems == [
        "row 4: not an email address: 'not-an-address'",
        "row 5: no email",
        "row 6: phone '12' not imported: not a valid number",
    ]
    by_email = {c["email"]: c for c in cards}
    assert by_email["ivan@acme.ru"] == {
        "email": "ivan@acme.ru", "name": "Ivan Petrov", "organization": "ACME",
        "tier": "gold", "phone": "+74951234567",
    }  # fmt: skip
    assert by_email["petr@acme.ru"]["organization"] == "ACME", "organization from the domain"
    assert by_email["olga@gmail.com"]["organization"] == "ACME"
    # Importing again updates the same cards instead of creating new ones.
    report, cards = _import(tmp_path, path)
    assert (report.created, report.updated, len(cards)) == (0, 3, 3)


def test_contacts_import_xlsx_and_lookup(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Email", "Name", "Company", "Mobile", "Tier"])
    # A number typed into a cell loses its leading 0; the default region still places it.
    sheet.append(["anna@shop.de", "Anna", "Shop GmbH", 15112345678, "silver"])
    path = tmp_path / "contacts.xlsx"
    book.save(path)
    report, cards = _import(tmp_path, path, region="DE")
    assert report.created == 1 and not report.problems
    assert cards[0]["phone"] == "+4915112345678"
    options = {"tier_priority": {"silver": "high"}}
    plugin = crm.create_plugin(
        PluginContext(
            "crm",
            Settings(),
            options,
            session_factory(make_engine(f"sqlite:///{tmp_path / 'crm.db'}")),
        )
    )
    card = asyncio.run(plugin.postdesk_lookup_contact("anna@shop.de"))
    assert card is not None and card["organization"] == "Shop GmbH" and card["priority"] == "high"
    assert asyncio.run(plugin.postdesk_lookup_contact("nobody@shop.de")) is None


def test_crm_lookups_asked_together_share_one_read(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "email,name,organization,tier\n"
        "anna@shop.de,Anna,Shop GmbH,gold\n"
        "bob@shop.de,Bob,,\n"  # no organization of his own: his domain's
        "olga@gmail.com,Olga,,\n",
        encoding="utf-8",
    )
    _import(tmp_path, path)
    engine = make_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    plugin = crm.create_plugin(
        PluginContext(
            "crm", Settings(), {"tier_priority": {"gold": "high"}}, session_factory(engine)
        )
    )
    statements: list[str] = []
    event.listen(plugin.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    async def ask(*emails: str) -> list[Any]:
        return await asyncio.gather(*(plugin.postdesk_lookup_contact(e) for e in emails))

    anna, bob, olga, nobody, again = asyncio.run(
        ask("anna@shop.de", "BOB@shop.de", "olga@gmail.com", "nobody@shop.de", "Anna@Shop.de")
    )
    assert anna["organization"] == "Shop GmbH" and anna["priority"] == "high"
    assert again == anna
    assert bob["name"] == "Bob" and bob["organization"] == "Shop GmbH" and "priority" not in bob
    assert olga["name"] == "Olga" and olga["organization"] is None
    assert nobody is None
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2
    statements.clear()
    assert asyncio.run(ask("olga@gmail.com"))[0]["name"] == "Olga"  # a new loop: a new round
    assert len(statements) == 2  # its own round: its contact, its domain's organization


def test_a_file_without_an_email_column_is_refused(tmp_path: Path) -> None:
    from postdesk.plugins.crm.importer import ImportFileError

    path = tmp_path / "c.csv"
    path.write_text("Name,Phone\nX,1\n")
    with pytest.raises(ImportFileError, match="no email column"):
        _import(tmp_path, path)


def _orders_runner(shop: Shop, folder: Any = None, timeout: float = 5.0) -> Any:
    """A plugin runner with the order lookup against ``shop``, asking or answering lookups
    through the facts folder ``folder``."""
    import dataclasses

    from postdesk.daemon.config import PluginSettings
    from postdesk.plugins.host import load_plugins
    from postdesk.plugins.runner import PluginRunner

    options = {
        "orders_http": {
            "by_number_url": f"{shop.url}/orders/{{number}}",
            "fields": {"number": "id"},
        }
    }
    plugins = PluginSettings(
        enabled=("postdesk.plugins.orders_http",),
        lookup_timeout_seconds=timeout,
        options=options,
    )
    return PluginRunner(load_plugins(dataclasses.replace(Settings(), plugins=plugins)), folder)


def test_the_worker_asks_and_the_plugins_process_answers_many_at_once(tmp_path: Path) -> None:
    """Under serve the worker hands its lookups to the plugins process (another runner, as in
    another process): it asks and goes on; the questions of many messages are answered at once
    against a slow shop (a burst of 40 together, not a few at a time), and the worker takes the
    answers without asking the shop itself."""
    from postdesk.plugins.facts import FactsFolder

    folder = FactsFolder(tmp_path / "lookups")
    with Shop(delay=0.5) as shop:
        shop.orders.update({f"2000{n}": {"id": f"2000{n}"} for n in range(40)})
        answering, worker = _orders_runner(shop, folder), _orders_runner(shop, folder)
        try:
            stop_answering = answering.start_answering()
            worker.look_up_elsewhere()
            started = time.monotonic()
            pending = [
                worker.lookup(f"c{n}@example.org", f"Order 2000{n}", f"spool-{n}")
                for n in range(40)
            ]
            assert time.monotonic() - started < 0.5, "asking never waits for the shop"
            for n, facts in enumerate(worker.facts(p) for p in pending):
                assert [o["number"] for o in facts["orders"]] == [f"2000{n}"]
            assert shop.most_at_once >= 30, "answered together"
            assert sorted(p for p, _auth in shop.requests) == sorted(
                f"/orders/2000{n}" for n in range(40)
            ), "each asked once, by the answering process"
            assert not [p for p in folder.folder.rglob("*") if p.is_file()], "every file taken"
            stop_answering()
        finally:
            answering.close()
            worker.close()


def test_lookups_are_answered_over_a_socket_whose_path_is_longer_than_unix_allows(
    tmp_path: Path,
) -> None:
    """A data directory deep enough that ``<data_dir>/lookups/answers.sock`` is longer than a
    Unix socket address may be still gets its lookups answered by the plugins process."""
    from postdesk.plugins.facts import FactsFolder

    folder = FactsFolder(tmp_path / ("d" * 60) / ("e" * 60) / "lookups")
    assert len(str(folder.socket)) > 108
    with Shop() as shop:
        answering, worker = _orders_runner(shop, folder), _orders_runner(shop, folder, timeout=30)
        try:
            stop_answering = answering.start_answering()
            worker.look_up_elsewhere()
            started = time.monotonic()
            pending = worker.lookup("c@example.org", "Order 10001", "s1")
            assert [o["number"] for o in worker.facts(pending)["orders"]] == ["10001"]
            assert time.monotonic() - started < 10, "answered, not looked up after the timeout"
            stop_answering()
        finally:
            answering.close()
            worker.close()


def test_an_unanswered_question_is_looked_up_by_the_worker_after_the_timeout(
    tmp_path: Path,
) -> None:
    """No process answers (the plugins process is down, or has not started yet: the worker
    asks before the folder exists): once the lookup timeout has passed, the worker looks up
    itself; a restarted answering process answers the question its predecessor had taken."""
    from postdesk.plugins.facts import FactsFolder

    folder = FactsFolder(tmp_path / "lookups")  # no answering process has made it yet
    with Shop() as shop:
        worker = _orders_runner(shop, folder, timeout=0.5)
        worker.look_up_elsewhere()
        try:
            pending = worker.lookup("c@example.org", "Order 10001", "s1")
            time.sleep(0.3)
            assert not pending.done() and not shop.requests, "it waits for an answer"
            assert [o["number"] for o in worker.facts(pending)["orders"]] == ["10001"]
            assert [p for p, _auth in shop.requests] == ["/orders/10001"]
        finally:
            worker.close()

    # A question the answering process had taken when it died is asked again of its successor.
    with Shop(delay=1.0) as shop:
        worker, predecessor = _orders_runner(shop, folder), _orders_runner(shop, folder)
        worker.look_up_elsewhere()
        try:
            stop_predecessor = predecessor.start_answering()
            started = time.monotonic()
            pending = worker.lookup("c@example.org", "Order 10002", "s2")
            wait_until(lambda: shop.requests, what="the predecessor asked the shop")
            stop_predecessor()  # it dies before it answers
            successor = _orders_runner(shop, folder)
            try:
                stop_answering = successor.start_answering()
                assert [o["number"] for o in worker.facts(pending)["orders"]] == ["10002"]
                assert time.monotonic() - started < 4.5, "answered before the worker's timeout"
                assert len(shop.requests) == 2, "asked by the predecessor, then the successor"
                stop_answering()
            finally:
                successor.close()
        finally:
            predecessor.close()
            worker.close()


def test_later_hands_over_the_facts_or_nothing_after_the_timeout() -> None:
    """What a held notification is completed with: the lookups' facts once they answer,
    ``{}`` once the lookup timeout has passed."""
    import concurrent.futures
    import dataclasses

    from postdesk.daemon.config import PluginSettings
    from postdesk.plugins.host import load_plugins
    from postdesk.plugins.runner import PluginRunner

    with Shop() as shop:
        options = {
            "orders_http": {
                "by_number_url": f"{shop.url}/orders/{{number}}",
                "fields": {"number": "id"},
            }
        }
        plugins = PluginSettings(
            enabled=("postdesk.plugins.orders_http",), lookup_timeout_seconds=1.0, options=options
        )
        runner = PluginRunner(load_plugins(dataclasses.replace(Settings(), plugins=plugins)))
        try:
            for hang, expected in ((False, "10001"), (True, None)):
                shop.hang = hang
                handed: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
                pending = runner.lookup(f"{hang}@example.org", f"order 1000{int(hang) + 1}")
                assert pending is not None
                runner.later(pending, handed.set_result)
                facts = handed.result(timeout=10)
                numbers = [order["number"] for order in facts.get("orders", [])]
                assert numbers == ([expected] if expected else [])
        finally:
            shop.released.set()
            runner.close()
