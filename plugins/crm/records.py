"""Reading and writing contact cards: one contact per email, organizations by name or domain."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.orm import Session

from postdesk.daemon.store.db import in_list
from postdesk.models.crm import Organization
from postdesk.models.schema import Contact

PERSONAL_DOMAINS = (
    "gmail.com", "googlemail.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com",
    "icloud.com", "me.com", "aol.com", "gmx.de", "gmx.net", "web.de", "mail.ru", "yandex.ru",
    "proton.me", "protonmail.com",
)  # fmt: skip  # never an organization's own domain


def find_contacts(
    session: Session | Connection, emails: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The cards (name, email, organization, tier, phone) of the known ones of ``emails``, by
    lower-cased address, in two queries whatever their number: the contacts with their own
    organization, then the organizations owning the domains of those that have none."""
    addresses = sorted({email.lower() for email in emails})
    cards = {
        row.email: dict(row._mapping)
        for row in session.execute(_FIND, {"emails": in_list(addresses)})
    }
    domains = {e.rpartition("@")[2] for e, card in cards.items() if card["organization"] is None}
    if domains:
        owners = {
            d: n for d, n in session.execute(_BY_DOMAIN, {"domains": in_list(sorted(domains))})
        }
        for email, card in cards.items():
            if card["organization"] is None:
                card["organization"] = owners.get(email.rpartition("@")[2])
    return cards


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


# The statements, built once, of the lookups every new message makes: the contacts with their
# own organization, and the organizations owning email domains.
_CONTACTS = cast(Table, Contact.__table__)
_ORGANIZATIONS = cast(Table, Organization.__table__)
_FIND = (
    select(
        _CONTACTS.c.email,
        _CONTACTS.c.name,
        _ORGANIZATIONS.c.name.label("organization"),
        _CONTACTS.c.tier,
        _CONTACTS.c.phone,
    )
    .select_from(_CONTACTS)
    .outerjoin(_ORGANIZATIONS, _ORGANIZATIONS.c.id == _CONTACTS.c.organization_id)
    .where(_CONTACTS.c.email.in_(bindparam("emails", expanding=True)))
)
_BY_DOMAIN = select(_ORGANIZATIONS.c.domain, _ORGANIZATIONS.c.name).where(
    _ORGANIZATIONS.c.domain.in_(bindparam("domains", expanding=True))
)
