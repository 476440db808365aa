"""``postdesk contacts import`` on contact files as address books, CRMs and people in several
languages write them: exports' column names, several columns of one field, title rows above
the header, UTF-16 and Windows code pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from postdesk.daemon.config import Settings
from postdesk.daemon.store.db import make_engine, session_factory, transaction, upgrade_schema
from postdesk.plugins import crm
from postdesk.plugins.crm.importer import ImportFileError, ImportReport, import_contacts
from postdesk.plugins.crm.records import all_cards
from postdesk.plugins.host import PluginContext


def _import(tmp_path: Path, path: Path, region: str = "") -> tuple[ImportReport, dict[str, Any]]:
    """Import ``path`` into a fresh database; the report and the cards by email."""
    engine = make_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    upgrade_schema(engine)
    factory = session_factory(engine)
    with transaction(factory) as session:
        report = import_contacts(session, path, region, frozenset(crm.PERSONAL_DOMAINS))
    with factory() as session:
        cards = {card["email"]: card for card in all_cards(session)}
    engine.dispose()
    return report, cards


def test_a_google_contacts_export_uses_value_columns_and_skips_labels(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "First Name,Middle Name,Last Name,Organization Name,Organization Title,"
        "E-mail 1 - Label,E-mail 1 - Value,E-mail 2 - Label,E-mail 2 - Value,"
        "Phone 1 - Label,Phone 1 - Value\n"
        "Anna,,Schmidt,Shop GmbH,CEO,* Work,anna@shop.de ::: anna.private@gmail.com,,,"
        "Mobile,+49 151 12345678\n"
        "Bob,,Stone,,,,,Home,bob@stone.example,,\n",  # only his second address
        encoding="utf-8-sig",
    )
    report, cards = _import(tmp_path, path)
    assert (report.created, report.problems) == (2, [])
    assert cards["anna@shop.de"] == {
        "email": "anna@shop.de", "name": "Anna Schmidt", "organization": "Shop GmbH",
        "tier": None, "phone": "+4915112345678",
    }  # fmt: skip
    assert cards["bob@stone.example"]["name"] == "Bob Stone"


def test_crm_exports_that_name_the_record_in_each_column(tmp_path: Path) -> None:
    pipedrive = tmp_path / "people.csv"
    pipedrive.write_text(
        "Person - Name,Person - Organization,Person - Email - Work,Person - Phone - Work,"
        "Person - Label,Person - Owner\n"
        "Eva Lind,Lind AB,eva@lind.example,+46 8 123 456 78,Hot lead,Sam Seller\n",
        encoding="utf-8",
    )
    hubspot = tmp_path / "hubspot.csv"
    hubspot.write_text(
        "Record ID,First Name,Last Name,Email,Mobile Phone Number,Associated Company,"
        "Contact owner\n"
        "101,Joe,Park,joe@park.example,+1 415 555 0100,Park Labs,Sam Seller\n",
        encoding="utf-8",
    )
    _, cards = _import(tmp_path, pipedrive)
    assert cards["eva@lind.example"] == {
        "email": "eva@lind.example", "name": "Eva Lind", "organization": "Lind AB",
        "tier": None, "phone": "+46812345678",
    }  # fmt: skip
    _, cards = _import(tmp_path, hubspot)
    assert cards["joe@park.example"] == {
        "email": "joe@park.example", "name": "Joe Park", "organization": "Park Labs",
        "tier": None, "phone": "+14155550100",
    }  # fmt: skip


def test_a_phone_cell_with_words_or_several_numbers_gives_its_first_number(
    tmp_path: Path,
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "email,phone\n"
        "a@shop.example,+1 202-555-0143 ::: +1 202-555-0178\n"  # Google's several values
        "b@shop.example,Tel. 030/1234567 (Büro)\n"
        'c@shop.example,"030 1234567, 0170 1234567"\n'
        "d@shop.example,call me maybe\n",
        encoding="utf-8",
    )
    report, cards = _import(tmp_path, path, region="DE")
    phones = {email: card["phone"] for email, card in cards.items()}
    assert phones == {
        "a@shop.example": "+12025550143",
        "b@shop.example": "+49301234567",
        "c@shop.example": "+49301234567",
        "d@shop.example": None,
    }
    assert report.problems == [
        "row 5: phone 'call me maybe' not imported: (1) The string"
        " supplied did not seem to be a phone number. (default region DE)"
    ]


def test_an_outlook_export_in_windows_1252_keeps_its_accents(tmp_path: Path) -> None:
    path = tmp_path / "outlook.csv"
    path.write_bytes(
        (
            '"First Name","Last Name","Company","E-mail Address","E-mail Display Name",'
            '"Business Phone","Mobile Phone"\r\n'
            '"Jürgen","Müller","Bäckerei Müller","jm@baeckerei.example",'
            '"Jürgen Müller (jm@baeckerei.example)","","030 1234567"\r\n'
        ).encode("cp1252")
    )
    report, cards = _import(tmp_path, path, region="DE")
    assert report.created == 1 and not report.problems
    card = cards["jm@baeckerei.example"]
    assert (card["name"], card["organization"]) == ("Jürgen Müller", "Bäckerei Müller")
    assert card["phone"] == "+49301234567", "the mobile phone, the business one being empty"


def test_a_russian_excel_csv_in_windows_1251_with_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "клиенты.csv"
    path.write_bytes(
        (
            "ФИО;Электронная почта;Телефон;Компания;Тариф\r\n"
            "Иванов Иван Петрович;Ivan.Ivanov@romashka.ru;8 (495) 123-45-67;Компания «Ромашка»;Gold\r\n"
            "Сидорова Мария;maria@romashka.ru;+7 916 000-00-00;;\r\n"
        ).encode("cp1251")
    )
    report, cards = _import(tmp_path, path, region="RU")
    assert report.created == 2 and not report.problems
    ivan = cards["ivan.ivanov@romashka.ru"]
    assert ivan["name"] == "Иванов Иван Петрович"
    assert (ivan["organization"], ivan["phone"], ivan["tier"]) == (
        "Компания «Ромашка»", "+74951234567", "gold",
    )  # fmt: skip
    assert cards["maria@romashka.ru"]["organization"] == "Компания «Ромашка»", "from the domain"


def test_excel_unicode_text_french_headers(tmp_path: Path) -> None:
    path = tmp_path / "contacts.txt"
    path.write_text(
        "Prénom\tNom\tAdresse e-mail\tTéléphone\tSociété\n"
        "Éloïse\tDurand\teloise@atelier.fr\t01 23 45 67 89\tL'Atelier\n",
        encoding="utf-16",  # a byte-order mark, then UTF-16LE: Excel's "Unicode text"
    )
    report, cards = _import(tmp_path, path, region="FR")
    assert report.created == 1 and not report.problems
    assert cards["eloise@atelier.fr"] == {
        "email": "eloise@atelier.fr", "name": "Éloïse Durand", "organization": "L'Atelier",
        "tier": None, "phone": "+33123456789",
    }  # fmt: skip


def test_an_xlsx_header_below_a_title_and_spanish_names(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Clientes 2026"])
    sheet.append([])
    sheet.append(["Nombre", "Apellidos", "Correo electrónico", "Teléfono", "Empresa"])
    sheet.append(["Lucía", "García López", "Lucia <lucia@tienda.es>", "612 34 56 78", "Tienda SL"])
    sheet.append(["Pablo", "", "no es un correo", "", ""])
    path = tmp_path / "clientes.xlsx"
    book.save(path)
    report, cards = _import(tmp_path, path, region="ES")
    assert report.created == 1
    assert report.problems == ["row 5: not an email address: 'no es un correo'"], "file rows"
    card = cards["lucia@tienda.es"]
    assert (card["name"], card["organization"], card["phone"]) == (
        "Lucía García López", "Tienda SL", "+34612345678",
    )  # fmt: skip


def test_a_file_with_no_email_column_names_its_header(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("\nName,Phone,Notes\nX,1,\n")
    with pytest.raises(ImportFileError, match=r"no email column \(header: Name, Phone, Notes\)"):
        _import(tmp_path, path)


def test_an_old_excel_file_is_refused_by_the_cli_with_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "postdesk.toml"
    config.write_text(
        f'[helpdesk]\naddress = "support@example.com"\ndata_dir = "{tmp_path / "data"}"\n'
        '[plugins]\nenabled = ["postdesk.plugins.crm"]\n'
    )
    old = tmp_path / "contacts.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))  # an OLE2 header
    cli = [sys.executable, "-m", "postdesk.daemon.cli", "--config", str(config)]
    done = subprocess.run(
        [*cli, "contacts", "import", str(old)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "save it as XLSX or CSV" in done.stderr and "Traceback" not in done.stderr


def test_the_settings_default_region_places_local_numbers(tmp_path: Path) -> None:
    region = crm.crm_settings(
        PluginContext("crm", Settings(), {"default_region": "it"})
    ).default_region
    path = tmp_path / "c.csv"
    path.write_text("Email,Nome,Cognome,Telefono,Azienda\nm@r.it,Marco,Rossi,06 1234 5678,R srl\n")
    report, cards = _import(tmp_path, path, region=region)
    assert not report.problems
    assert cards["m@r.it"]["name"] == "Marco Rossi" and cards["m@r.it"]["phone"] == "+390612345678"
