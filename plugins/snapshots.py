"""Read-only snapshots of tickets and messages: what plugins receive instead of ORM objects.

A snapshot is a ``MappingProxyType`` holding the fields of ``postdesk ticket N --json``
(SPEC section 3), with lists turned into tuples, so a plugin can read but never change it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

Snapshot = Mapping[str, Any]


_PLAIN = (str, int, float, bool, type(None))  # most values: checked before the Mapping ABC


def freeze(value: Any) -> Any:
    """``value`` made read-only all the way down: dicts become mapping proxies, lists tuples."""
    if type(value) in _PLAIN:
        return value
    if type(value) is dict or isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A snapshot back as plain JSON-ready data (dicts and lists)."""
    if type(value) in _PLAIN:
        return value
    if type(value) is MappingProxyType or isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def json_default(value: Any) -> Any:
    """``json.dumps``' ``default`` for snapshots, so they need no :func:`thaw` first: a
    mapping is written as an object (tuples are arrays already), anything else as its str."""
    if type(value) is MappingProxyType or isinstance(value, Mapping):
        return dict(value)
    return str(value)
