"""``--log-format json``: one JSON object per log line, with the per-message fields when known."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the text log line
MESSAGE_FIELDS = ("message_id", "spool_id", "ticket", "outcome", "duration")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, and message_id/spool_id/ticket/outcome/duration when the
    record carries them (``extra=``); an exception adds its traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in MESSAGE_FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "":
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def use_log_format(log_format: str) -> None:
    """Switch the root logger's handlers to ``log_format`` (``text`` leaves them as they are)."""
    if log_format != "json":
        return
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
