"""Small made-up mail for the classifier tests: customers asking for help, and spam.

Deterministic (seeded), varied enough that a model has to learn words, structure and links,
and small enough to train in a second.
"""

from __future__ import annotations

import random
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from tests.support import HELPDESK

PROBLEMS = [
    "my printer does not print any more",
    "the invoice for order {n} shows the wrong amount",
    "I cannot log in to my account since yesterday",
    "the parcel for order {n} has not arrived",
    "the app crashes when I open the settings page",
    "please change the delivery address of order {n}",
    "the screen of the laptop I bought flickers",
    "I was charged twice for my subscription",
]
PLEAS = ["Could you help me?", "What should I do?", "Thanks for looking into it.", "Regards"]
OFFERS = [
    "CHEAP PILLS no prescription needed",
    "You have WON a free cruise",
    "Make $5000 a week from home",
    "Lowest mortgage rates guaranteed",
    "Hot singles in your area",
    "Replica watches at 90% off",
]
SPAMMY = ["act now", "limited offer", "click here", "unsubscribe", "100% free", "risk free"]
NAMES = ["carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
HAM_DOMAINS = ["example.org", "example.net", "mail.example.com", "customer.example"]
SPAM_DOMAINS = ["offers.example", "deals.example", "promo.example", "win.example"]


def ham_mail(n: int) -> bytes:
    """A customer's plain-text request for help."""
    rnd = random.Random(f"ham{n}")
    sender = f"{rnd.choice(NAMES)}@{rnd.choice(HAM_DOMAINS)}"
    problem = rnd.choice(PROBLEMS).format(n=1000 + n)
    message = EmailMessage()
    message["From"] = f"{sender.split('@')[0].title()} <{sender}>"
    message["To"] = HELPDESK
    message["Subject"] = problem.capitalize()[:40]
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message["X-Mailer"] = rnd.choice(["Thunderbird 115", "Apple Mail", "Outlook 16"])
    message.set_content(f"Hello,\n\n{problem}. {rnd.choice(PLEAS)}\n\n{sender.split('@')[0]}\n")
    return message.as_bytes()


def spam_mail(n: int) -> bytes:
    """An HTML-only advertisement full of links, from a throwaway address."""
    rnd = random.Random(f"spam{n}")
    domain = rnd.choice(SPAM_DOMAINS)
    offer = rnd.choice(OFFERS)
    message = EmailMessage()
    message["From"] = f"promo{rnd.randint(100, 999)}@{domain}"
    message["To"] = HELPDESK
    message["Subject"] = f"{offer.upper()}!!!"
    message["Message-ID"] = make_msgid(domain="bulk.example")
    links = "".join(
        f'<p><a href="http://{rnd.choice(SPAM_DOMAINS)}/{rnd.randint(1, 99)}">{w}</a></p>'
        for w in rnd.sample(SPAMMY, 3)
    )
    message.set_content(
        f"<html><body><h1>{offer}</h1>{links}<img src='http://{domain}/x.gif'></body></html>",
        subtype="html",
    )
    return message.as_bytes()


def write_folder(folder: Path, raws: list[bytes], mbox_line: bool = False) -> Path:
    """Write one message per file into ``folder`` (optionally with a leading mbox From line)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, raw in enumerate(raws):
        prefix = b"From someone@example.org  Mon May  6 10:00:00 2024\n" if mbox_line else b""
        (folder / f"{index:04d}.eml").write_bytes(prefix + raw)
    return folder
