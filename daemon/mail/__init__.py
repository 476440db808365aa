"""Mail: pure functions that turn raw bytes into a parsed message and message parts into text.

The entry point is ``parse.parse_message``; ``limits`` (structure limits on raw bytes),
``fields`` (MIME field rewriting), ``headers``, ``charset``, ``body``, ``htmltext``, ``reply``
(new text versus quoted history) and ``filenames`` (safe attachment names) are its parts.
Imports nothing else of postdesk.
"""
