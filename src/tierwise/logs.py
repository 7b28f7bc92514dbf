"""Log records from tierwise (and the HTTP clients it drives) leave the process redacted.

A ``logging.Filter`` on the ``tierwise`` logger would not see records of ``tierwise.ledger`` and the
other child loggers (filters do not apply to propagated records), and tierwise does not own the
user's handlers. So ``install`` wraps the log record factory: every record of those loggers is
redacted once, when it is made (after the level check, so records nobody emits cost nothing).
"""

from __future__ import annotations

import logging
from typing import Any

# Loggers whose records are redacted, with their children: ours, and the clients whose debug logs
# quote requests, URLs and provider errors.
_PREFIXES = ("tierwise", "httpx", "httpx2", "httpcore", "httpcore2", "openai", "anthropic")


class RedactFilter(logging.Filter):
    """Replaces a record's message (arguments merged in), traceback and stack with redacted text.

    Always returns True: it changes records, it never drops them. Usable on any handler too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from tierwise.ledger.redact import redact  # the ledger package is heavy; load it on first use

        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the record as logging would report it
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # Formatters print exc_text as it is; with exc_info gone no handler renders the raw one.
            record.exc_text, record.exc_info = redact(record.exc_text), None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactFilter()
_installed = False


def _redacted(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _PREFIXES)


def install() -> None:
    """Redact every record of tierwise's loggers (idempotent; keeps any factory installed before)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _redacted(record.name):
            _FILTER.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
