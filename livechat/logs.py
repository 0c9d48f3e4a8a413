"""Log output: ``[log] format = "text"`` (one readable line per record) or ``"json"`` (one JSON
object per line: time, level, logger, message, the request id where there is one, and the
exception's traceback). What is logged is the same in both; no line ever holds a token or a
password (the access log drops query strings, the driver's debug log is off)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from livechat.config import LogFormat

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["requestId"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def use_format(fmt: LogFormat) -> None:
    """Switch the root logger's handlers to ``fmt`` (``logging.basicConfig`` ran before the
    configuration was read, so that configuration errors are logged too)."""
    formatter = JsonFormatter() if fmt is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
