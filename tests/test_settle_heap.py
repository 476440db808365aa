"""settle_heap: serve's processes put their start-up heap out of the collector's sight."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from postdesk.daemon.config import load_settings
from postdesk.daemon.runtime import build_runtime, settle_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the test process its heap back afterwards."""
    yield
    gc.unfreeze()


def test_the_runtime_is_frozen_and_later_cycles_still_collected(
    tmp_path: Path, unfrozen: None
) -> None:
    config = tmp_path / "postdesk.toml"
    config.write_text(
        f'[helpdesk]\naddress = "support@example.com"\ndata_dir = "{tmp_path / "data"}"\n'
    )
    runtime = build_runtime(load_settings(str(config), environ={}), b"s" * 32)
    gc.collect()  # earlier tests' garbage is not the heap to be frozen
    before = len(gc.get_objects())

    settle_heap()

    assert gc.get_freeze_count() >= before * 0.9  # the runtime's objects among them
    assert len(gc.get_objects()) < before / 10  # a full collection no longer walks them
    assert all(obj is not runtime for obj in gc.get_objects())

    class Node:
        partner: object = None

    first, second = Node(), Node()
    first.partner, second.partner = second, first  # a cycle made after settling
    del first, second
    assert gc.collect() >= 2
