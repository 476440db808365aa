"""Order-number search benchmark: the multilingual default pattern against the English-only one.

Run from the repository root: ``python bench/bench_order_pattern.py [--corpus DIR] [--repeat 15]``.
Texts: the subjects and bodies of the support tickets (English, German) and the customer
requests of the shared corpus (``--corpus``, default ``$POSTDESK_CORPUS`` or ``../shared/corpus``;
left out when absent), and generated messages of one to five sentences in one of the pattern's
languages, half with an order number, and two 4 kB long ones. Prints, for the ASCII texts
(searched lower-cased) and the others (searched with the pattern itself) of each source, then
for those holding a digit (the others the new default does not search): µs per message for
``OrdersHttp.numbers`` with the default pattern and for the English-only default it replaced
(copied here, with its lower-cased twin), best of ``--repeat`` rounds in which the two take
turns, their ratio, and the numbers each found.
"""

# Sentences in many scripts; letters that look Latin are meant as they are.
# ruff: noqa: RUF001

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postdesk.daemon.config import Settings
from postdesk.plugins.host import PluginContext
from postdesk.plugins.orders_http import create_plugin

# The English-only default and its lower-cased twin, as they were before the multilingual one.
OLD_PATTERN = re.compile(
    r"(?i)\border\s*(?:no\.?|number|#)?\s*:?\s*#?\s*([A-Z0-9-]*\d[A-Z0-9-]{2,})"
)
OLD_LOWERED = re.compile(
    r"order(?<![a-z0-9_]order)\s*+(?:no\.?|number|#)?\s*+:?\s*+#?\s*+([a-z0-9-]*\d[a-z0-9-]{2,})"
)
DIGIT = re.compile(r"\d")
TICKETS = (
    "dataset-tickets-multi-lang-4-20k.csv",
    "aa_dataset-tickets-multi-lang-5-2-50-version.csv",
    "dataset-tickets-german_normalized.csv",
)
# One message's sentences per language: about an order (with its number), and about anything.
LANGUAGES = (
    (
        "Where is my order #{n}? It was due last week.",
        "Thanks, in order to plan I need it by Friday.",
    ),
    ("Order number: {n}, two items, still not shipped.", "Best regards, Carol Smith, +1 555 0100"),
    ("Wo bleibt meine Bestellung {n}? Bestellnummer steht oben.", "Vielen Dank und Grüße, Anna"),
    ("Ich habe die Bestell-Nr. {n} erhalten, aber keine Ware.", "Bitte melden Sie sich bald."),
    ("Bonjour, ma commande n° {n} n'est pas arrivée.", "Merci d'avance, cordialement."),
    ("Hola, el número de pedido es {n} y no ha llegado.", "Gracias, un saludo."),
    ("Buongiorno, l'ordine n. {n} risulta ancora in lavorazione.", "Grazie mille, saluti."),
    ("Olá, a encomenda {n} ainda não chegou.", "Obrigado, cumprimentos."),
    ("Mijn bestelling {n} is nog niet geleverd.", "Met vriendelijke groet, Jan"),
    ("Dzień dobry, zamówienie nr {n} nie dotarło.", "Pozdrawiam serdecznie."),
    ("Здравствуйте, мой заказ № {n} не пришёл.", "Спасибо, с уважением."),
    ("Добрий день, номер замовлення {n}.", "Дякую, з повагою."),
    ("Dobrý den, objednávka č. {n} nedorazila.", "Děkuji, s pozdravem."),
    ("Hej, min beställning {n} har inte kommit.", "Tack, vänliga hälsningar."),
    ("Merhaba, sipariş numarası: {n} hâlâ gelmedi.", "Teşekkürler, iyi günler."),
)


def corpus_dir(given: str | None) -> Path:
    """The shared corpus folder."""
    root = Path(__file__).resolve().parents[2]
    return Path(given or os.environ.get("POSTDESK_CORPUS") or root / "shared" / "corpus")


def corpus_texts(base: Path) -> dict[str, list[str]]:
    """Ticket subjects and bodies, and customer requests, of the shared corpus."""
    tickets: list[str] = []
    csv.field_size_limit(1 << 24)
    for name in TICKETS:
        path = base / "categories" / "tickets" / name
        if path.exists():
            with path.open(newline="", encoding="utf-8") as rows:
                for row in csv.DictReader(rows):
                    if row.get("body"):  # a last row cut short has none
                        tickets.append(f"{row['subject'] or ''}\n{row['body']}")
    requests: list[str] = []
    for path in sorted((base / "categories" / "bitext").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as rows:
            requests.extend(row["utterance"] for row in csv.DictReader(rows) if row["utterance"])
    return {"tickets": tickets, "requests": requests}


def generated_texts(count: int) -> list[str]:
    """Messages in one language of a few sentences, half about an order; two 4 kB long ones."""
    chance = random.Random(11)
    texts = []
    for number in range(count):
        about, other = chance.choice(LANGUAGES)
        said = [other] * chance.randint(1, 4) + [about.format(n=10000 + number)] * (number % 2)
        chance.shuffle(said)
        texts.append(" ".join(said))
    plain = " ".join(other for _about, other in LANGUAGES[:2])
    texts.append(plain * 24)  # long, no order number, digits in a signature
    texts.append((plain + LANGUAGES[0][0].format(n=4711)) * 16)  # long, saying "order" often
    return texts


def old_numbers(text: str, limit: int = 5) -> list[str]:
    """The order numbers the English-only default found, as numbers() searched for them."""
    ascii_ = text.isascii()
    matches = OLD_LOWERED.finditer(text.lower()) if ascii_ else OLD_PATTERN.finditer(text)
    found: list[str] = []
    for match in matches:
        number = text[match.start(1) : match.end(1)]
        if number not in found:
            found.append(number)
    return found[:limit]


def measure(
    finds: dict[str, Callable[[str], list[str]]], texts: list[str], repeat: int
) -> dict[str, tuple[float, int]]:
    """Best-of-``repeat`` µs per text and the numbers found, for each way of finding them;
    the ways take turns within each round, so that a busy machine slows them alike."""
    best = dict.fromkeys(finds, float("inf"))
    found = dict.fromkeys(finds, 0)
    for _ in range(repeat):
        for name, find in finds.items():
            started = time.perf_counter()
            found[name] = sum(len(find(text)) for text in texts)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: (best[name] * 1e6 / len(texts), found[name]) for name in finds}


def main() -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="the shared corpus folder")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--generated", type=int, default=2000, help="generated messages")
    args = parser.parse_args()
    base = corpus_dir(args.corpus)
    sources = {"generated": generated_texts(args.generated)}
    if base.is_dir():
        sources.update(corpus_texts(base))
    else:
        print(f"no corpus at {base} (give --corpus or set POSTDESK_CORPUS): generated texts only")
    options = {"by_number_url": "http://shop.invalid/orders/{number}"}
    plugin = create_plugin(PluginContext("orders_http", Settings(), options, None))
    rows = [
        (f"{source} {kind}", [text for text in texts if text.isascii() == (kind == "ASCII")])
        for source, texts in sources.items()
        for kind in ("ASCII", "non-ASCII")
    ]
    every = [text for texts in sources.values() for text in texts]
    for kind in ("ASCII", "non-ASCII"):  # where the new default pays for its words
        chosen = [text for text in every if text.isascii() == (kind == "ASCII")]
        rows.append((f"{kind} with a digit", [text for text in chosen if DIGIT.search(text)]))
    print(
        f"{'texts':<24} {'count':>6} {'chars':>6} {'old us':>8} {'new us':>8} {'new/old':>7}  found old/new"
    )
    for name, texts in rows:
        if not texts:
            continue
        (old, old_found), (new, new_found) = measure(
            {"old": old_numbers, "new": plugin.numbers}, texts, args.repeat
        ).values()
        chars = sum(map(len, texts)) // len(texts)
        print(
            f"{name:<24} {len(texts):>6} {chars:>6} {old:>8.2f} {new:>8.2f} {new / old:>7.2f}"
            f"  {old_found}/{new_found}"
        )


if __name__ == "__main__":
    main()
