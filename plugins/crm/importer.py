"""``postdesk contacts import FILE``: contact rows from CSV or XLSX into the CRM.

Columns are recognised by their common names (email, name, organization/company, phone,
tier, first/last name) in the common languages and address book exports (``columns.py``);
the header may follow a few title rows. A CSV file may be UTF-8, UTF-16 or a Windows code
page. Phone numbers become E.164 with the phonenumbers library, so
"+7 (495) 123-45-67" and "8 495 123 45 67" (default region RU) are the same number. Rows
with the same email merge into one card (later non-empty values win); an email already in
the database updates that card. Rows that cannot be used are reported with the reason.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr
from pathlib import Path

import openpyxl
import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from postdesk.daemon.mail.charset import decode_bytes
from postdesk.models.schema import Contact
from postdesk.plugins.crm.columns import column_field
from postdesk.plugins.crm.records import claim_domain, organization_named

HEADER_ROWS = 10  # a header may follow a title or a blank row or two; it is looked for this far
SPREADSHEETS_ELSEWHERE = (".xls", ".ods", ".numbers")  # formats to save as XLSX or CSV first


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


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """The data rows of a CSV or XLSX file, each as (its row number in the file, {field:
    text}); the header is the first row with an email column (see ``columns.py``). Where
    several columns hold one field (home and work phone, E-mail 1 and 2), a row's first
    non-empty one counts."""
    suffix = path.suffix.lower()
    if suffix in SPREADSHEETS_ELSEWHERE:
        raise ImportFileError(f"{path}: {suffix} files are not read; save it as XLSX or CSV")
    rows = enumerate(_xlsx_rows(path) if suffix in (".xlsx", ".xlsm") else _csv_rows(path), 1)
    first: list[str] | None = None  # the first row with something in it, to name in an error
    fields: list[str] = []
    for number, header in rows:
        if first is None and any(cell.strip() for cell in header):
            first = header
        fields = [column_field(cell) for cell in header]
        if "email" in fields or number >= HEADER_ROWS:
            break
    if first is None:
        raise ImportFileError(f"{path}: the file is empty")
    if "email" not in fields:
        raise ImportFileError(f"{path}: no email column (header: {', '.join(first)})")
    for number, row in rows:
        values: dict[str, str] = {}
        for name, value in zip(fields, row, strict=False):
            value = value.strip()
            if name and value and name not in values:
                values[name] = value
        yield number, values


def _csv_rows(path: Path) -> Iterator[list[str]]:
    text = _csv_text(path.read_bytes())
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], ",;\t|")
    except csv.Error:
        dialect = csv.excel
    yield from csv.reader(io.StringIO(text), dialect)


def _csv_text(data: bytes) -> str:
    """A CSV file's text: UTF-16 or UTF-32 by its byte-order mark (Excel's "Unicode text"),
    UTF-8 (with or without one), else the legacy code page it reads as (a Windows Excel
    export: cp1252, cp1251...), as mail bodies are decoded."""
    for mark, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
                        (codecs.BOM_UTF16_BE, "utf-16"), (codecs.BOM_UTF8, "utf-8-sig")):  # fmt: skip
        if data.startswith(mark):
            return data.decode(codec, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_bytes(data, None, [], "contact file")


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
    if not row.get("email"):
        return None, "no email"
    address = first_address(row["email"])
    local, _, domain = address.partition("@")
    if not local or "." not in domain or " " in address:
        return None, f"not an email address: {row['email']!r}"
    name = row.get("name") or " ".join(p for p in (row.get("first"), row.get("last")) if p)
    card = Card(address, name, row.get("organization", ""), "", row.get("tier", "").lower())
    problem = None
    if row.get("phone"):
        card.phone, problem = e164(row["phone"], region)
    return card, problem


def first_address(cell: str) -> str:
    """The first address in an email cell, lower-cased: a cell may hold one address, a
    "Name <address>", or several separated by commas, semicolons or Google's " ::: "."""
    listed = getaddresses([cell.replace(":::", ",").replace(";", ",")])
    found = [address for _name, address in listed if "@" in address]
    return (found[0] if found else parseaddr(cell)[1]).lower()


def e164(raw: str, region: str) -> tuple[str, str | None]:
    """``raw`` as an E.164 number, or ("", why not). A cell with words or several numbers
    around it ("Tel. 030/1234567 (office)", "+1 202-555-0143 ::: +1 202-555-0178", as Google
    Contacts exports them) gives its first valid number."""
    try:
        number = phonenumbers.parse(raw, region or None)
    except phonenumbers.NumberParseException as error:
        found = _first_in_text(raw, region)
        if found:
            return found, None
        where = f" (default region {region})" if region else " (no plugins.crm.default_region)"
        return "", f"phone {raw!r} not imported: {error}{where}"
    if not phonenumbers.is_valid_number(number):
        found = _first_in_text(raw, region)
        return (found, None) if found else ("", f"phone {raw!r} not imported: not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def _first_in_text(raw: str, region: str) -> str:
    """The first valid phone number phonenumbers finds inside ``raw``, as E.164, or ""."""
    for match in phonenumbers.PhoneNumberMatcher(raw, region or None):
        return phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
    return ""


def import_contacts(
    session: Session, path: Path, region: str, personal: frozenset[str]
) -> ImportReport:
    """Read ``path`` and merge its cards into the database in ``session`` (no commit).

    ``personal`` domains (free mail) never become an organization's domain.
    """
    report = ImportReport()
    cards: dict[str, Card] = {}
    for number, row in read_rows(path):
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
