"""The order lookup's default pattern: order numbers as customers write them in the languages
postdesk's mail comes in, nothing from text that mentions none, and the same numbers from the
plugin's fast search as from the pattern itself."""

# Sentences in many scripts; letters that look Latin are meant as they are.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postdesk.daemon.config import Settings
from postdesk.plugins import order_numbers, orders_http
from postdesk.plugins.host import PluginContext

SENTENCES = [
    # English
    ("Where is my order 12345? It was due on Monday.", ["12345"]),
    ("Order #12345 arrived broken.", ["12345"]),
    ("my order no. A-4711 and ORDER NUMBER: 98765", ["A-4711", "98765"]),
    ("Your order ID 12345 has shipped.", ["12345"]),
    ("Re: Order # 55-AB7, order nr 10001", ["55-AB7", "10001"]),
    # German
    ("Wo bleibt meine Bestellung 12345?", ["12345"]),
    ("Bestellnummer: 12345, bestellt am Montag", ["12345"]),
    ("Ihre Bestell-Nr. 4711-22 ist unterwegs", ["4711-22"]),
    ("Bestellung Nr. 12345 und Auftragsnummer 67890", ["12345", "67890"]),
    ("zu Auftrag 2024-117 fehlt die Rechnung", ["2024-117"]),
    # French
    ("Ma commande n° 12345 n'est pas arrivée.", ["12345"]),
    ("numéro de commande 12345, merci", ["12345"]),
    ("Commande N°12345 : colis abîmé", ["12345"]),
    ("COMMANDE No 12345", ["12345"]),
    # Spanish
    ("Mi pedido 12345 no ha llegado.", ["12345"]),
    ("número de pedido: 12345", ["12345"]),
    ("Pedido nº 12345", ["12345"]),
    ("Hola, mi orden #67890 y el pedido no. 12345", ["67890", "12345"]),
    # Italian
    ("L'ordine n. 12345 è in ritardo.", ["12345"]),
    ("numero d'ordine 12345", ["12345"]),
    ("Ordine nr. 12345", ["12345"]),
    # Portuguese
    ("A minha encomenda 12345 não chegou.", ["12345"]),
    ("Encomenda n.º 12345", ["12345"]),
    ("Re: encomenda 12345", ["12345"]),
    ("número do pedido: 12345", ["12345"]),
    # Dutch
    ("Mijn bestelling 12345 is niet aangekomen.", ["12345"]),
    ("Bestelnummer: 12345", ["12345"]),
    ("ordernummer 12345", ["12345"]),
    # Polish
    ("Moje zamówienie nr 12345 nie dotarło.", ["12345"]),
    ("numer zamówienia: 12345", ["12345"]),
    # Russian
    ("Мой заказ № 12345 не пришёл.", ["12345"]),
    ("номер заказа 12345", ["12345"]),
    ("ЗАКАЗ №12345", ["12345"]),
    # Ukrainian
    ("Моє замовлення № 12345 не прийшло.", ["12345"]),
    ("номер замовлення: 12345", ["12345"]),
    # Czech
    ("Moje objednávka č. 12345 nedorazila.", ["12345"]),
    ("číslo objednávky 12345", ["12345"]),
    # Swedish
    ("Min beställning 12345 har inte kommit.", ["12345"]),
    ("Beställningsnummer: 12345, ordernr 67890", ["12345", "67890"]),
    # Turkish
    ("Sipariş numarası: 12345", ["12345"]),
    ("SİPARİŞ NO: 12345", ["12345"]),
    ("Order numarasi 12345", ["12345"]),  # a case-insensitive ı matches i
    # Danish, Norwegian, Finnish, Romanian, Indonesian
    ("Ordre nr. 55123 er ikke kommet", ["55123"]),
    ("Bestillingsnummer: 77812, bestilling 77813", ["77812", "77813"]),
    ("Tilaus 88123 ei ole saapunut, tilauksen numero 88124", ["88123", "88124"]),
    ("Comanda nr. 12345 nu a ajuns", ["12345"]),
    ("numarul comenzii 12346 (typed without diacritics)", ["12346"]),
    ("numărul comenzii 12347", ["12347"]),
    ("Pesanan 123456 belum sampai", ["123456"]),
    # Greek, Vietnamese, Japanese, Chinese, Korean (no space before the CJK words)
    ("Η παραγγελία 45123 δεν ήρθε", ["45123"]),
    ("Đơn hàng số 123456 chưa đến", ["123456"]),
    ("ご注文番号：12345678 が届きません", ["12345678"]),
    ("我的订单号：20240101888 还没到，訂單編號 20240101889", ["20240101888", "20240101889"]),
    ("주문번호 12345678 배송", ["12345678"]),
    # "is" after a marker
    ("my order number is 5512-3321", ["5512-3321"]),
    ("Meine Bestellnummer ist 4711-22", ["4711-22"]),
    ("your order no. is 12345", ["12345"]),
    # Two languages: each word's own search, taken in turn; a match hides one inside it
    ("Order 12345 / Bestellung 67890 / commande 12345", ["12345", "67890"]),
    ("order 1-bestellung 234, pedido 567", ["1-bestellung", "567"]),
]
NEGATIVES = [
    "in order to help you, please reply",
    "I ordered 3 items and reordered 2",
    "reorder 12345",  # another word: the number may be an article's
    "border 12345 and recorder 67890",
    "Ich möchte 2 Artikel bestellen.",
    "Je voudrais commander 2 articles.",
    "commande de 2 articles, order of 10 cups",  # no marker, and too short
    "El pedido no ha llegado.",
    "Bestellung vom 12.03. ist da",
    "Заказ ещё не пришёл",
    "orders 12345",  # a plural the pattern does not know
    "order is 100% broken",  # "is" only after a marker ("order number is ...")
    "The pesanan and the comanda were 2 days late",
    # Words spelt without their own letters: not looked for (a pattern of one's own can)
    "zamowienie numer 12345, objednavka 12345, siparis 12345, bestallning 12345",
]


def _plugin() -> orders_http.OrdersHttp:
    options = {"by_number_url": "http://shop.invalid/orders/{number}", "max_orders": 100}
    return orders_http.create_plugin(PluginContext("orders_http", Settings(), options, None))


def _by_pattern(pattern: str, text: str) -> list[str]:
    found: list[str] = []
    for match in re.finditer(pattern, text):
        if match.group(1) not in found:
            found.append(match.group(1))
    return found


@pytest.mark.parametrize(("text", "numbers"), SENTENCES)
def test_order_numbers_are_found_in_each_language(text: str, numbers: list[str]) -> None:
    assert _by_pattern(order_numbers.DEFAULT_PATTERN, text) == numbers
    assert _plugin().numbers(text) == numbers


@pytest.mark.parametrize("text", NEGATIVES)
def test_text_that_mentions_no_order_number_gives_none(text: str) -> None:
    assert _by_pattern(order_numbers.DEFAULT_PATTERN, text) == []
    assert _plugin().numbers(text) == []


def test_the_sentences_in_ascii_take_the_lower_cased_search() -> None:
    """Enough of the table is ASCII for the lower-cased twins to be tested by it."""
    ascii_words = set(order_numbers._DEFAULT_LOWERED)
    covered = {
        word for text, _numbers in SENTENCES if text.isascii() for word in ascii_words
        if word in text.lower()
    }  # fmt: skip
    assert covered == ascii_words


# The look-ahead at the words' first letters only saves time: without it, the same matches.
WITHOUT_LOOKAHEAD = re.sub(r"\(\?=\[[^]]*\]\)", "", order_numbers.DEFAULT_PATTERN, count=1)
WORDS = ("Order", "ORDINE", "orden", "Pedido", "encomenda", "Commande", "Bestellung")
WORDS += ("auftrags", "Beställnings", "zamówienie", "objednávky", "SİPARİŞ", "Заказа")
WORDS += ("замовлення", "ſiparis", "aſ", "K", "x", " ", "-", "№", "n°", "12", "345")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=12).map("".join))
def test_the_look_ahead_changes_nothing_found(text: str) -> None:
    assert WITHOUT_LOOKAHEAD != order_numbers.DEFAULT_PATTERN
    assert _by_pattern(order_numbers.DEFAULT_PATTERN, text) == _by_pattern(WITHOUT_LOOKAHEAD, text)


def test_a_number_is_a_whole_run_of_at_most_83_characters() -> None:
    longest = "A" * 40 + "1" + "B" * 40 + "-"  # the run is cut nowhere: it is too long
    assert _plugin().numbers(f"order {longest[:-1]} and order {longest}x") == [longest[:-1]]


@pytest.mark.parametrize("unit", ["order-", "order-1-", "pedido-x1-", "заказ-"])
def test_hostile_text_is_searched_in_one_pass(unit: str) -> None:
    """A run of order words and hyphens 60 kB long (within what is searched): unbounded, every
    word went back through the run after it (1.5 s per 18 kB, so about 17 s here); now about
    as long as any text. The alarm fails the test where the search would hold the plugins'
    loop."""
    import signal

    text = unit * (60_000 // len(unit)) + "1"
    assert len(text) < order_numbers.SCANNED_CHARS
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the search took over 5 s"))
    signal.alarm(5)
    try:
        found = _plugin().numbers(text)
        by_pattern = _by_pattern(order_numbers.DEFAULT_PATTERN, text)
    finally:
        signal.alarm(0)
    assert found == by_pattern[:100] and all(len(number) <= 83 for number in found)
