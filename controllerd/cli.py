"""The `controllerd` command: run, check-config, demo, plan."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from controllerd import __version__
from controllerd.config import Config, ConfigError, DeviceConfig, load_config


def _describe(device: DeviceConfig) -> str:
    return f"{device.id}: {device.describe()}, every {device.poll_interval_s:g} s"


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(
        f"{args.file}: valid; site {config.controller.site}, controller "
        f"{config.controller.id}, {len(config.devices)} device(s)"
    )
    for device in config.devices:
        print(f"  {_describe(device)}")
    return 0


def _load_or_exit(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        raise SystemExit(2) from exc


def _run(args: argparse.Namespace) -> int:
    from controllerd.daemon import run_daemon
    from controllerd.logs import configure_logging

    config = _load_or_exit(args.config)
    configure_logging(level=config.logging.level, fmt=config.logging.format)
    return asyncio.run(run_daemon(config))


def _sentinel(args: argparse.Namespace) -> int:
    from controllerd.logs import configure_logging
    from controllerd.sentinel import Sentinel, load_sentinel_config

    try:
        config = load_sentinel_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 2
    configure_logging(level=config.logging.level, fmt=config.logging.format)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        await Sentinel(config=config).run()

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from controllerd.demo import run_demo

    return run_demo(config_path=args.config, port=args.port, speed=args.speed)


def _plan(argv: Sequence[str]) -> int:
    # The planner imports numba (half a second): only `controllerd plan` pays for it.
    from controllerd.planner import cli as planner_cli

    parser = argparse.ArgumentParser(
        prog="controllerd plan", description="Plan a pick list offline; print JSON."
    )
    planner_cli.configure_parser(parser)
    return planner_cli.run(parser.parse_args(argv))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="controllerd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"controllerd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon (systemd ExecStart)")
    run.add_argument("-c", "--config", type=Path, required=True, help="room config (TOML)")
    run.set_defaults(func=_run)

    check = sub.add_parser("check-config", help="validate a config file; exit 2 on problems")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check_config)

    sentinel = sub.add_parser(
        "sentinel", help="page when controllers or the broker go silent (run it elsewhere)"
    )
    sentinel.add_argument("-c", "--config", type=Path, required=True, help="sentinel config")
    sentinel.set_defaults(func=_sentinel)

    demo = sub.add_parser("demo", help="the whole stack on simulators with a private broker")
    demo.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    demo.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per second (default: the config's)",
    )
    demo.add_argument(
        "-c", "--config", type=Path, default=None, help="room config (default: config/demo.toml)"
    )
    demo.set_defaults(func=_demo)

    plan = sub.add_parser(
        "plan",
        add_help=False,
        help="plan a pick list offline and print it as JSON (see docs/planner.md)",
    )
    plan.add_argument("plan_args", nargs=argparse.REMAINDER)  # parsed by _plan
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plan"]:
        return _plan(argv[1:])
    args = _parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
