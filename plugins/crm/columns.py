"""Which column of a contact file holds what: header names as people and programs write them.

Contact lists come from spreadsheets typed by hand and from the exports of address books and
CRMs (Google Contacts' "E-mail 1 - Value", Outlook's "E-mail Address" and "Business Phone",
Thunderbird's "Primary Email", HubSpot's "Company Name"), in the language of whoever made
them. A header is compared after :func:`header_key` has folded case, accents and
punctuation, dropped column numbers and a trailing "value", so one spelling here covers
"E-Mail", "e_mail", "EMAIL" and "E-mail 2 - Value". CRMs that export several records name
the record first ("Person - Email - Work", "Person - Organization" in Pipedrive, "Contact
Phone"): a header that is not known as it is, is looked up again without such a first word.
A header that names none of these (a "Label", "Type" or "Notes" column) is ignored.
"""

from __future__ import annotations

import re
import unicodedata

_ALIASES = {
    "email": (
        # English, and the address book and CRM exports
        "email", "e mail", "mail", "email address", "e mail address", "primary email",
        "work email", "business email", "email work", "email home", "emails", "contact email",
        "secondary email", "other email", "alternate email",
        # German, French, Spanish, Italian, Portuguese, Dutch
        "e mail adresse", "emailadresse", "mailadresse", "adresse e mail", "adresse email",
        "adresse mail", "courriel", "adresse courriel", "mel", "correo", "correo electronico",
        "direccion de correo", "direccion de correo electronico", "posta elettronica",
        "indirizzo email", "indirizzo e mail", "endereco de email", "endereco de e mail",
        "e mailadres", "emailadres",
        # Polish, Swedish, Czech, Turkish, Russian, Ukrainian
        "adres e mail", "adres email", "e post", "e postadress", "e mailova adresa",
        "e posta", "eposta", "электронная почта", "эл почта", "почта", "адрес электронной почты",
        "электронна пошта", "пошта",
    ),
    "name": (
        "name", "full name", "fullname", "contact", "contact name", "display name",
        "customer name", "client name", "person", "vollstandiger name", "anzeigename",
        "kontakt", "ansprechpartner", "nom complet", "nom et prenom", "nombre completo",
        "nombre y apellidos", "nome completo", "naam", "volledige naam", "imie i nazwisko",
        "jmeno a prijmeni", "ad soyad", "fio", "фио", "ф и о", "имя и фамилия",  # noqa: RUF001
        "полное имя", "контакт", "контактное лицо", "имя фамилия", "піб", "ім я та прізвище",
    ),
    "first": (
        "first name", "firstname", "first", "given name", "forename", "vorname", "prenom",
        "nombre", "nome", "primeiro nome", "voornaam", "imie", "fornamn", "jmeno", "имя",
        "ім я",
    ),
    "last": (
        "last name", "lastname", "last", "surname", "family name", "nachname", "familienname",
        "nom", "nom de famille", "apellido", "apellidos", "cognome", "sobrenome", "apelido",
        "achternaam", "nazwisko", "efternamn", "prijmeni", "soyad", "soyadi", "фамилия",
        "прізвище",
    ),
    "organization": (
        "organization", "organisation", "company", "company name", "org", "account",
        "account name", "customer", "organization name", "organisation name", "business",
        "associated company", "primary company",
        "employer", "firma", "firmenname", "unternehmen", "societe",
        "entreprise", "nom de l entreprise", "empresa", "compania", "organizacion", "azienda",
        "societa", "organizzazione", "organizacao", "bedrijf", "bedrijfsnaam", "organisatie",
        "organizacja", "foretag", "spolecnost", "sirket", "компания", "организация", "фирма",
        "название компании", "наименование организации", "компанія", "організація",
    ),
    "phone": (
        "phone", "telephone", "tel", "mobile", "phone number", "cell", "cell phone",
        "mobile phone", "mobile number", "business phone", "work phone", "home phone",
        "mobile phone number", "work phone number", "home phone number",
        "primary phone", "telephone number", "phone work", "phone mobile", "telefon",
        "telefonnummer", "handy", "mobil", "mobiltelefon", "portable", "numero de telephone",
        "telefono", "movil", "celular", "cellulare", "telefone", "telefoon", "telefoonnummer",
        "mobiel", "numer telefonu", "telefonszam", "telefon numarasi", "телефон", "тел",
        "мобильный", "мобильный телефон", "номер телефона", "телефон мобильный",
    ),
    "tier": (
        "tier", "level", "plan", "segment", "support tier", "service level", "sla", "stufe",
        "tarif", "niveau", "forfait", "nivel", "livello", "piano", "тариф", "уровень",
    ),
}  # fmt: skip

_NOT_WORDS = re.compile(r"[\W_]+")
_COUNTED = re.compile(r"\b\d+\b")  # "E-mail 2", "Phone 1 - Value": which of several


def header_key(header: str) -> str:
    """``header`` folded for comparison: no case, accents, punctuation, numbers or "value"."""
    decomposed = unicodedata.normalize("NFKD", header.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = _COUNTED.sub(" ", _NOT_WORDS.sub(" ", plain)).split()
    if len(words) > 1 and words[-1] == "value":
        words.pop()
    return " ".join(words)


_BY_KEY = {header_key(alias): field for field, aliases in _ALIASES.items() for alias in aliases}


# The first words by which a CRM's export says whose field a column is.
_RECORD_WORDS = frozenset({"person", "contact", "customer", "client", "lead", "user", "member"})


def column_field(header: str) -> str:
    """The contact field (email, name, first, last, organization, phone, tier) a column with
    ``header`` holds, or "" for a column of something else."""
    key = header_key(header)
    field = _BY_KEY.get(key, "")
    record, _, rest = key.partition(" ")
    if not field and record in _RECORD_WORDS:
        field = _BY_KEY.get(rest, "")
    return field
