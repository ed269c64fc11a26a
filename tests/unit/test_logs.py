"""Log output as journald receives it: one JSON object per line, ours and the libraries'."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import logging, structlog
from structlog.contextvars import bound_contextvars
from controllerd.logs import configure_logging
configure_logging(level="info", fmt="{fmt}")
log = structlog.get_logger("drivers.modbus")
with bound_contextvars(device="freezer-1"):
    log.warning("device not answering", error="timeout")
    log.debug("still not answering")
logging.getLogger("pymodbus").warning("library says %s", "hello")
logging.getLogger("pymodbus").info("library chatter")
"""


def _run(fmt: str, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(fmt=fmt)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return result.stderr.splitlines()


def test_json_lines_carry_context_and_level_and_libraries_are_json_too() -> None:
    lines = _run("json")
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert len(records) == 2, lines  # debug and library info are filtered out
    ours, library = records
    assert ours["event"] == "device not answering"
    assert ours["device"] == "freezer-1" and ours["level"] == "warning"
    assert ours["timestamp"].endswith("Z")
    assert library["event"] == "library says hello"
    assert library["logger"] == "pymodbus" and library["level"] == "warning"


def test_auto_is_json_under_systemd() -> None:
    lines = _run("auto", env={**os.environ, "JOURNAL_STREAM": "8:1234"})
    assert all(json.loads(line) for line in lines)
    assert len(lines) == 2
