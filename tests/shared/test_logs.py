"""Log lines: one JSON object per line with the job id, or plain text."""

import json
import logging

import pytest

from shared import logs


def _record(message: str = "hello %s", *args, **extra) -> logging.LogRecord:
    record = logging.LogRecord("emcoins.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_json_line_has_message_level_and_extras():
    line = logs.JsonFormatter().format(_record("hello %s", "world", job_id="j1", draws=30))
    data = json.loads(line)
    assert "\n" not in line
    assert data["message"] == "hello world"
    assert data["level"] == "WARNING" and data["logger"] == "emcoins.test"
    assert data["job_id"] == "j1" and data["draws"] == 30
    assert data["time"].endswith("Z")


def test_json_job_id_from_the_context():
    with logs.job_context("j2"):
        data = json.loads(logs.JsonFormatter().format(_record()))
    assert data["job_id"] == "j2"
    assert "job_id" not in json.loads(logs.JsonFormatter().format(_record()))


def test_json_traceback_stays_on_one_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, True)
        import sys

        record.exc_info = sys.exc_info()
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line and "RuntimeError: boom" in json.loads(line)["exc_info"]


def test_text_line():
    with logs.job_context("j3"):
        line = logs.TextFormatter().format(_record("hello %s", "you"))
    assert line.endswith("WARNING emcoins.test [job j3] hello you")


def test_configure_replaces_its_own_handler(capsys):
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        logs.configure("text")
        logs.configure("json")
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1
        logging.getLogger("emcoins.test").warning("one line", extra={"job_id": "j4"})
        err = capsys.readouterr().err.strip().splitlines()
        assert json.loads(err[-1])["job_id"] == "j4"
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="not one of json, text"):
        logs.formatter("xml")
