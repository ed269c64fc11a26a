"""`simulators`: serve a room's simulated devices, and inject faults into a running simulator.

  simulators run -c FILE [--speed X]
  simulators inject DEVICE FAULT [--clear] [-c FILE | --socket PATH]
  simulators status [-c FILE | --socket PATH]

`run` prints one line to stdout once every device listens (see `SimulatedRoom.ready_line`),
logs to stderr, and exits 0 on SIGINT or SIGTERM after removing its symlinks and socket.
The control socket is `--socket`, else the `-c` file's `[simulator].control_socket`, else
$CONTROLLERD_SIMULATOR_SOCKET, else /tmp/controllerd-demo/simulators.sock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from controllerd.config import Config, ConfigError, load_config
from simulators._control import inject, status
from simulators._errors import SimulatorError
from simulators._faults import FAULTS
from simulators._room import SimulatedRoom

DEFAULT_SOCKET = Path("/tmp/controllerd-demo/simulators.sock")
SOCKET_ENV = "CONTROLLERD_SIMULATOR_SOCKET"
_log = structlog.get_logger("simulators")


def _configure_logging(level: str) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simulators", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve every simulated device of a room config")
    run.add_argument("-c", "--config", type=Path, required=True, help="room config (TOML)")
    run.add_argument(
        "--speed", type=float, help="simulated seconds per second (overrides [simulator].speed)"
    )
    for name, text in (("inject", "inject or clear a fault"), ("status", "print the state")):
        sub = commands.add_parser(name, help=text)
        if name == "inject":
            sub.add_argument("device", help="simulated device id")
            sub.add_argument("fault", help="one of: " + ", ".join(FAULTS))
            sub.add_argument("--clear", action="store_true", help="clear the fault")
        where = sub.add_mutually_exclusive_group()
        where.add_argument("-c", "--config", type=Path, help="room config naming the socket")
        where.add_argument("--socket", type=Path, help="control socket of the simulator")
    return parser


def _socket(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    if args.config is not None:
        config = load_config(args.config)
        if config.simulator is None:
            raise SimulatorError(f"{args.config}: no [simulator] section")
        return config.simulator.control_socket
    env = os.environ.get(SOCKET_ENV)
    return Path(env) if env else DEFAULT_SOCKET


async def _serve(config: Config, config_path: Path, speed: float | None) -> None:
    room = SimulatedRoom(config=config, config_dir=config_path.parent, speed=speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with room:
            print(room.ready_line(), flush=True)
            await stop.wait()
            _log.info("stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `simulators` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            config = load_config(args.config)
            _configure_logging(config.logging.level)
            asyncio.run(_serve(config, Path(args.config), args.speed))
        elif args.command == "inject":
            _configure_logging("warning")
            asyncio.run(
                inject(args.device, args.fault, clear=args.clear, socket_path=_socket(args))
            )
        else:
            _configure_logging("warning")
            print(json.dumps(asyncio.run(status(socket_path=_socket(args))), indent=2))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 2
    except (SimulatorError, OSError) as exc:
        print(f"simulators {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
