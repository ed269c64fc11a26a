"""Fuzz the firmware bridge's decoders with atheris (coverage-guided): not part of the test run.

Any byte string fed to `FrameReader` / `decode_frame` must yield frames or FrameError, and any
frame payload fed to `decode_message` must yield a Message or MessageError: another exception
type, or a hang, is a bug (atheris reports the input that caused it). The hypothesis properties
in tests/unit/firmware_bridge/test_codec.py check the same on every test run; this goes deeper.

Run: `.venv/bin/pip install atheris` (or the `bench` extra), then
`.venv/bin/python bench/fuzz_firmware.py [-runs=200000] [-max_total_time=60]`
(libFuzzer flags). Without flags it runs 50 000 inputs and writes a line to bench/RESULTS.md.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import atheris
from _results import write_section  # bench/ is sys.path[0] when run as a script

with atheris.instrument_imports():
    from firmware_bridge._errors import FrameError, MessageError
    from firmware_bridge._framing import FrameReader, decode_frame
    from firmware_bridge._messages import decode_message

DEFAULT_RUNS = 50_000


def one_input(data: bytes) -> None:
    """The fuzz target: both decoders on arbitrary bytes."""
    buffer = data
    while buffer:
        try:
            consumed, _ = decode_frame(buffer)
        except FrameError as exc:
            consumed = exc.consumed
        if consumed == 0:
            break
        buffer = buffer[consumed:]
    for frame in FrameReader().feed(data):
        with contextlib.suppress(MessageError):
            decode_message(frame.payload)
    with contextlib.suppress(MessageError):
        decode_message(data)


def main() -> None:
    if len(sys.argv) > 1:
        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()  # never returns: libFuzzer exits the process
        return
    # A default run fuzzes in a child (libFuzzer ends its process) and records the outcome.
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, __file__, f"-runs={DEFAULT_RUNS}"], capture_output=True, text=True
    )
    elapsed = time.monotonic() - started
    if child.returncode != 0:
        sys.stderr.write(child.stderr[-4000:])
        sys.exit(f"fuzzing found a failing input (exit {child.returncode}); see above")
    write_section(
        "Firmware codec fuzzing",
        [
            f"atheris (libFuzzer), {DEFAULT_RUNS} inputs in {elapsed:.0f} s: the frame and "
            "message decoders raised only FrameError / MessageError and never hung.",
            "",
            "Run: `.venv/bin/python bench/fuzz_firmware.py` (see its docstring).",
        ],
    )
    print(f"{DEFAULT_RUNS} inputs, no failure ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
