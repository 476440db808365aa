"""Reading and writing contact cards: one contact per email, organizations by name or domain."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, select
from sqlalchemy.orm import Session

from postdesk.models.crm import Organization
from postdesk.models.schema import Contact

PERSONAL_DOMAINS = (
    "gmail.com", "googlemail.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com",
    "icloud.com", "me.com", "aol.com", "gmx.de", "gmx.net", "web.de", "mail.ru", "yandex.ru",
    "proton.me", "protonmail.com",
)  # fmt: skip  # never an organization's own domain


def find_contact(session: Session | Connection, email: str) -> dict[str, Any] | None:
    """The card of ``email``: name, email, organization, tier, phone; None when unknown."""
    address = email.lower()
    row = session.execute(_FIND, {"email": address, "domain": address.rpartition("@")[2]}).first()
    return dict(row._mapping) if row is not None else None


def card(contact: Contact, organization: Organization | None) -> dict[str, Any]:
    """A contact as plain data."""
    return {
        "email": contact.email,
        "name": contact.name,
        "organization": organization.name if organization is not None else None,
        "tier": contact.tier,
        "phone": contact.phone,
    }


def organization_named(session: Session, name: str) -> Organization:
    """The organization called ``name`` (case-insensitively), created when new."""
    key = " ".join(name.lower().split())
    found = session.scalar(select(Organization).where(Organization.key == key))
    if found is None:
        found = Organization(name=" ".join(name.split()), key=key)
        session.add(found)
        session.flush()
    return found


def claim_domain(session: Session, organization: Organization, domain: str) -> None:
    """Give ``organization`` the email ``domain`` when neither has one yet."""
    if organization.domain or not domain:
        return
    owner = session.scalar(select(Organization.id).where(Organization.domain == domain))
    if owner is None:
        organization.domain = domain
        session.flush()


def all_cards(session: Session) -> list[dict[str, Any]]:
    """Every contact's card, by email."""
    organizations = {o.id: o for o in session.scalars(select(Organization))}
    by_domain = {o.domain: o for o in organizations.values() if o.domain}
    cards = []
    for contact in session.scalars(select(Contact).order_by(Contact.email)):
        organization = organizations.get(contact.organization_id or -1) or by_domain.get(
            contact.email.rpartition("@")[2]
        )
        cards.append(card(contact, organization))
    return cards


# One statement, built once, for the lookup every new message makes: the contact with its own
# organization, else the one owning its email domain.
_CONTACTS = cast(Table, Contact.__table__)
_OWN = cast(Table, Organization.__table__).alias("own")
_BY_DOMAIN = cast(Table, Organization.__table__).alias("by_domain")
_FIND = (
    select(
        _CONTACTS.c.email,
        _CONTACTS.c.name,
        func.coalesce(_OWN.c.name, _BY_DOMAIN.c.name).label("organization"),
        _CONTACTS.c.tier,
        _CONTACTS.c.phone,
    )
    .select_from(_CONTACTS)
    .outerjoin(_OWN, _OWN.c.id == _CONTACTS.c.organization_id)
    .outerjoin(_BY_DOMAIN, _BY_DOMAIN.c.domain == bindparam("domain"))
    .where(_CONTACTS.c.email == bindparam("email"))
)
