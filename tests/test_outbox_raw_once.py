"""A ticket's outgoing mail is stored once (migration 0014): its message row keeps the bytes,
the outbox row names it; rows queued before keep their own bytes and are still sent."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import Engine, text

from postdesk.daemon.outbound import maildir
from postdesk.daemon.store.db import alembic_config, upgrade_schema
from tests.test_outbox_sender import Env, drain, env, outbox, queue

__all__ = ["env"]  # the fixture, shared with the sender's tests
BEFORE = "0013_plugin_events"
OLD_MAIL = b"From: support@example.com\r\nTo: carol@example.org\r\nSubject: old\r\n\r\nqueued\r\n"


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def test_a_row_queued_before_the_upgrade_is_sent_with_its_own_bytes(env: Env) -> None:
    _migrate(env.engine, BEFORE, down=True)
    now = datetime.now(UTC)
    with env.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO outbox (kind, recipient, recipients, envelope_from, message_id, auto,"
                " raw, status, attempts, next_attempt_at, last_error, created_at) VALUES"
                " ('acknowledgement', 'carol@example.org', '[\"carol@example.org\"]',"
                " 'support@example.com', '<old@example.com>', true, :raw, 'pending', 0, :now, '',"
                " :now)"
            ),
            {"raw": OLD_MAIL, "now": now},
        )
    upgrade_schema(env.engine)
    [row] = outbox(env)
    assert row.message_pk is None and row.raw == OLD_MAIL
    assert drain(env) == 1
    new = env.settings.data_dir / "outbox-sent" / "new"
    assert (new / maildir.file_name(row.id)).read_bytes() == OLD_MAIL
    assert [item.status for item in outbox(env)] == ["sent"]


def test_a_downgrade_puts_the_bytes_back_into_the_outbox_rows(env: Env) -> None:
    item = queue(env)
    assert item is not None
    [row] = outbox(env)
    assert row.stored_raw == b"" and row.message_pk is not None and b"Printer" in row.raw
    _migrate(env.engine, BEFORE, down=True)
    with env.engine.connect() as connection:
        kept = connection.execute(text("SELECT raw FROM outbox")).scalar_one()
    assert kept == row.raw
    upgrade_schema(env.engine)
