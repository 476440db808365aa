"""The schema check at every start: a database at head is left alone without loading Alembic;
one behind is upgraded, one ahead or at an unknown revision is refused, as Alembic does."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text

from postdesk.daemon.store.db import SCHEMA_HEAD, alembic_config, make_engine, upgrade_schema


def _versions(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        rows = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    engine.dispose()
    return rows


def _migrated(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_schema(engine)
    engine.dispose()


def _set_version(database_url: str, revision: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


def test_schema_head_is_the_newest_migration(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    script = ScriptDirectory.from_config(alembic_config(engine))
    engine.dispose()
    assert script.get_current_head() == SCHEMA_HEAD


def test_a_database_at_head_is_checked_without_alembic(database_url: str) -> None:
    _migrated(database_url)
    code = (
        "import sys\n"
        "from postdesk.daemon.store.db import make_engine, upgrade_schema\n"
        f"engine = make_engine({database_url!r})\n"
        "upgrade_schema(engine)\n"
        "engine.dispose()\n"
        "print('alembic' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert _versions(database_url) == [SCHEMA_HEAD]


def test_a_database_behind_is_upgraded(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_schema(engine)
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    assert _versions(database_url) != [SCHEMA_HEAD]
    upgrade_schema(engine)
    engine.dispose()
    assert _versions(database_url) == [SCHEMA_HEAD]


@pytest.mark.parametrize("revision", ["9999_from_a_newer_postdesk", "not_a_revision"])
def test_a_database_ahead_or_unknown_is_refused(database_url: str, revision: str) -> None:
    _migrated(database_url)
    _set_version(database_url, revision)
    engine = make_engine(database_url)
    with pytest.raises(CommandError, match=f"Can't locate revision identified by '{revision}'"):
        upgrade_schema(engine)
    engine.dispose()
    assert _versions(database_url) == [revision]
