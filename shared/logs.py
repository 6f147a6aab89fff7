"""Log lines for the API and the workers: one JSON object per line, or plain text.

The job a line is about comes from the record's ``job_id`` (``extra={"job_id": ...}``)
or, failing that, from :data:`current_job`, which the request or task sets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

FORMATS = ("json", "text")
current_job: ContextVar[str | None] = ContextVar("emcoins_job_id", default=None)

# LogRecord's own attributes; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _job_id(record: logging.LogRecord) -> str | None:
    return getattr(record, "job_id", None) or current_job.get()


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "job_id"?, extras..., "exc_info"?}``."""

    def format(self, record: logging.LogRecord) -> str:
        """One line of JSON."""
        line = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = _job_id(record)
        if job_id:
            line["job_id"] = job_id
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in line:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [job <id>] message``."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(_job)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """One line of text (plus a traceback, if any)."""
        job_id = _job_id(record)
        record._job = f" [job {job_id}]" if job_id else ""
        return super().format(record)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``EMCOINS_LOG_FORMAT``."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure(fmt: str, *, level: int | str = logging.INFO) -> None:
    """Send the root logger's lines to stderr in ``fmt``; calling it again replaces ours."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)


def apply_format(logger: logging.Logger, fmt: str) -> None:
    """Give every handler of ``logger`` (one Celery set up) the ``fmt`` formatter."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(fmt))


@contextlib.contextmanager
def job_context(job_id: str | None) -> Iterator[None]:
    """Lines logged inside carry ``job_id``."""
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)
