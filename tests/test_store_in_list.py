"""in_list and in_pages: an IN list of any length, and a multi-row INSERT of any count of rows,
reach the database in a few shapes and do the same, so the compiled statements a connection
keeps stay few over a long run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, event, func, insert, select

from postdesk.daemon.store.db import in_list, in_pages, make_engine

ROWS = 300


def test_padded_to_a_power_of_two_with_the_last_value() -> None:
    assert in_list([]) == []
    for length in range(1, 1100):
        values = [f"k{n}" for n in range(length)]
        padded = in_list(iter(values))
        assert padded[:length] == values
        assert set(padded[length:]) <= {values[-1]}
        assert len(padded) & (len(padded) - 1) == 0  # a power of two
        assert length <= len(padded) < 2 * length


def test_pages_are_powers_of_two_in_order() -> None:
    for length in range(0, 700):
        values = list(range(length))
        pages = list(in_pages(values, most=64))
        assert [v for page in pages for v in page] == values
        assert all(len(page) & (len(page) - 1) == 0 and len(page) <= 64 for page in pages)
        assert len(pages) <= length // 64 + 6  # the bits of the rest below 64


class Recorded:
    """A table ``numbers`` on a real database, and the statements run on it so far."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        self.rows = Table("numbers", MetaData(), Column("id", Integer, primary_key=True))
        self.rows.create(self.engine)
        self.statements: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        self.statements.append(statement)

    def kinds(self, start: str, since: int = 0, until: int | None = None) -> set[str]:
        """The distinct statements beginning with ``start``, of those run from the
        ``since``-th to before the ``until``-th."""
        return {sql for sql in self.statements[since:until] if sql.startswith(start)}


@pytest.fixture
def recorded(database_url: str) -> Iterator[Recorded]:
    """A :class:`Recorded` on SQLite, and on a fresh PostgreSQL database."""
    table = Recorded(database_url)
    yield table
    table.engine.dispose()


def test_a_query_of_every_length_meets_ten_statements_and_selects_the_same(
    recorded: Recorded,
) -> None:
    rows = recorded.rows
    with recorded.engine.begin() as connection:
        connection.execute(insert(rows), [{"id": n} for n in range(ROWS)])
    marks = {}
    with recorded.engine.connect() as connection:
        for padded in (False, True):
            marks[padded] = len(recorded.statements)
            for length in range(1, ROWS + 1):
                wanted = list(range(0, 2 * length, 2))  # half of them beyond the table
                ids = in_list(wanted) if padded else wanted
                found = connection.scalars(select(rows.c.id).where(rows.c.id.in_(ids)))
                assert sorted(found) == [n for n in wanted if n < ROWS]
    unpadded = recorded.kinds("SELECT", marks[False], marks[True])
    assert len(unpadded) == ROWS  # what a connection would keep compiled, unpadded
    assert len(recorded.kinds("SELECT", marks[True])) == 10  # 1, 2, 4, ..., 512


def test_an_insert_of_every_count_in_pages_meets_seven_statements_and_returns_every_row(
    recorded: Recorded,
) -> None:
    rows, first = recorded.rows, 0
    with recorded.engine.begin() as connection:
        for count in range(1, 150):
            values = [{"id": n} for n in range(first, first + count)]
            first += count
            returned = [
                row.id
                for page in in_pages(values)
                for row in connection.execute(insert(rows).returning(rows.c.id), page)
            ]
            assert sorted(returned) == [value["id"] for value in values]
        assert connection.scalars(select(func.count()).select_from(rows)).one() == first
    assert 1 < len(recorded.kinds("INSERT")) <= 7  # 1, 2, 4, ..., 64 rows
