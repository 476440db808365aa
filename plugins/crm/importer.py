"""``postdesk contacts import FILE``: contact rows from CSV or XLSX into the CRM.

Columns are recognised by their common names (email, name, organization/company, phone,
tier, first/last name). Phone numbers become E.164 with the phonenumbers library, so
"+7 (495) 123-45-67" and "8 495 123 45 67" (default region RU) are the same number. Rows
with the same email merge into one card (later non-empty values win); an email already in
the database updates that card. Rows that cannot be used are reported with the reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

import openpyxl
import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from postdesk.models.schema import Contact
from postdesk.plugins.crm.records import claim_domain, organization_named

COLUMNS = {
    "email": ("email", "e-mail", "mail", "email address", "e-mail address", "emailaddress"),
    "name": ("name", "full name", "fullname", "contact", "contact name", "display name"),
    "first": ("first name", "firstname", "given name"),
    "last": ("last name", "lastname", "surname", "family name"),
    "organization": (
        "organization", "organisation", "company", "company name", "org", "account", "customer",
    ),
    "phone": ("phone", "telephone", "tel", "mobile", "phone number", "cell"),
    "tier": ("tier", "level", "plan", "segment", "support tier"),
}  # fmt: skip


class ImportFileError(Exception):
    """The file cannot be read as a contact list at all."""


@dataclass
class Card:
    """One usable row, normalised."""

    email: str
    name: str = ""
    organization: str = ""
    phone: str = ""
    tier: str = ""


@dataclass
class ImportReport:
    """What an import did: cards created and updated, and rows it could not use."""

    created: int = 0
    updated: int = 0
    merged: int = 0  # rows folded into an earlier row with the same email
    problems: list[str] = field(default_factory=list)  # "row N: reason"


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a CSV or XLSX file as {canonical column: text}; header row first."""
    rows = _xlsx_rows(path) if path.suffix.lower() in (".xlsx", ".xlsm") else _csv_rows(path)
    header = next(rows, None)
    if header is None:
        raise ImportFileError(f"{path}: the file is empty")
    names = [_canonical(h) for h in header]
    if "email" not in names:
        raise ImportFileError(f"{path}: no email column (header: {', '.join(header)})")
    for row in rows:
        yield {n: v.strip() for n, v in zip(names, row, strict=False) if n and v}


def _canonical(header: str) -> str:
    wanted = " ".join(header.lower().replace("_", " ").replace("-", " ").split())
    for name, aliases in COLUMNS.items():
        if wanted in {" ".join(a.replace("-", " ").split()) for a in aliases}:
            return name
    return ""


def _csv_rows(path: Path) -> Iterator[list[str]]:
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], ",;\t")
    except csv.Error:
        dialect = csv.excel
    yield from csv.reader(io.StringIO(text), dialect)


def _xlsx_rows(path: Path) -> Iterator[list[str]]:
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:
        raise ImportFileError(f"{path}: not a readable XLSX file: {error}") from None
    try:
        for values in book.worksheets[0].iter_rows(values_only=True):
            yield ["" if v is None else _cell_text(v) for v in values]
    finally:
        book.close()


def _cell_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a phone number typed as a number
    return str(value)


def normalise(row: dict[str, str], region: str) -> tuple[Card | None, str | None]:
    """The row as a card, and a problem worth reporting (None when all was well)."""
    address = parseaddr(row.get("email", ""))[1].lower()
    local, _, domain = address.partition("@")
    if not row.get("email"):
        return None, "no email"
    if not local or "." not in domain or " " in address:
        return None, f"not an email address: {row['email']!r}"
    name = row.get("name") or " ".join(p for p in (row.get("first"), row.get("last")) if p)
    card = Card(address, name, row.get("organization", ""), "", row.get("tier", "").lower())
    problem = None
    if row.get("phone"):
        card.phone, problem = e164(row["phone"], region)
    return card, problem


def e164(raw: str, region: str) -> tuple[str, str | None]:
    """``raw`` as an E.164 number, or ("", why not)."""
    try:
        number = phonenumbers.parse(raw, region or None)
    except phonenumbers.NumberParseException as error:
        where = f" (default region {region})" if region else " (no plugins.crm.default_region)"
        return "", f"phone {raw!r} not imported: {error}{where}"
    if not phonenumbers.is_valid_number(number):
        return "", f"phone {raw!r} not imported: not a valid number"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def import_contacts(
    session: Session, path: Path, region: str, personal: frozenset[str]
) -> ImportReport:
    """Read ``path`` and merge its cards into the database in ``session`` (no commit).

    ``personal`` domains (free mail) never become an organization's domain.
    """
    report = ImportReport()
    cards: dict[str, Card] = {}
    for number, row in enumerate(read_rows(path), start=2):
        if not row:
            continue
        card, problem = normalise(row, region)
        if problem:
            report.problems.append(f"row {number}: {problem}")
        if card is None:
            continue
        if card.email in cards:
            report.merged += 1
            _merge(cards[card.email], card)
        else:
            cards[card.email] = card
    for card in cards.values():
        _store(session, card, report, personal)
    return report


def _merge(kept: Card, later: Card) -> None:
    for name in ("name", "organization", "phone", "tier"):
        if getattr(later, name):
            setattr(kept, name, getattr(later, name))


def _store(session: Session, card: Card, report: ImportReport, personal: frozenset[str]) -> None:
    contact = session.scalar(select(Contact).where(Contact.email == card.email))
    if contact is None:
        contact = Contact(email=card.email, name=card.name, bouncing=False)
        session.add(contact)
        report.created += 1
    else:
        report.updated += 1
    contact.name = card.name or contact.name
    contact.phone = card.phone or contact.phone
    contact.tier = card.tier or contact.tier
    if card.organization:
        organization = organization_named(session, card.organization)
        contact.organization_id = organization.id
        domain = card.email.rpartition("@")[2]
        if domain not in personal:
            claim_domain(session, organization, domain)
    session.flush()
