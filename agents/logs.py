"""Structured JSON logs on stderr, one object per line, with secrets scrubbed.

The engine never logs secrets or personal data on purpose; the scrubber is the second line of
defence for third-party messages (connection URLs with passwords, SASL settings).
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import orjson

__all__ = ["JsonFormatter", "configure_logging", "scrub"]

_SECRETS = (
    re.compile(
        r"(?i)(password|passwd|secret|token|sasl_plain_password)(['\"]?\s*[=:]\s*['\"]?)"
        r"[^'\"\s,}&]+"
    ),
    re.compile(r"(?i)(rediss?://[^:/@\s]*:)[^@\s]+(@)"),  # redis://user:PASSWORD@host
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),  # e-mail addresses
)


def scrub(text: str) -> str:
    text = _SECRETS[0].sub(r"\1\2***", text)
    text = _SECRETS[1].sub(r"\1***\2", text)
    return _SECRETS[2].sub("***@***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # At DEBUG aiokafka logs every record it sends or fetches (credits, beneficiary ids) and
    # raw request bytes: never personal data in logs, whatever the engine's level.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.INFO))
