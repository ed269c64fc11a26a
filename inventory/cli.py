"""The `inventoryd` command: run, check-config, where, verify, export, quarantine."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO, TypeVar

import structlog

from inventory._config import InventoryConfig, load_config
from inventory._errors import ConfigError, StoreError
from inventory._queries import event_json, location_json
from inventory._service import VERSION, run_inventory
from inventory._store import Store, open_store
from inventory._verify import verify_store

DEFAULT_CONFIG = Path("/etc/inventoryd/inventory.toml")
_T = TypeVar("_T")
_log = structlog.get_logger("inventory")


def _load_or_exit(path: Path) -> InventoryConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2) from exc


def _store_of(args: argparse.Namespace) -> Store:
    if args.store is not None:
        return open_store(args.store, schema=args.schema or "inventory")
    config = _load_or_exit(args.config)
    return open_store(config.store.url, schema=args.schema or config.store.schema_name)


def _with_store(args: argparse.Namespace, work: Callable[[Store], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        async with _store_of(args) as store:
            return await work(store)

    try:
        return asyncio.run(run())
    except StoreError as exc:
        print(f"store: {exc}", file=sys.stderr)
        raise SystemExit(3) from exc


def _run(args: argparse.Namespace) -> int:
    from inventory._logs import configure_logging

    config = _load_or_exit(args.config)
    configure_logging(level=config.logging.level, fmt=config.logging.format)
    try:
        asyncio.run(run_inventory(config))
    except StoreError as exc:
        _log.error("store unavailable at start", reason=str(exc))
        return 3
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.file)
    print(
        f"{args.file}: valid; site {config.inventory.site}, store {config.store.url}, "
        f"broker {config.mqtt.host}:{config.mqtt.port}"
    )
    return 0


def _where(args: argparse.Namespace) -> int:
    async def work(store: Store) -> int:
        location = await store.location(args.barcode)
        history = await store.history(args.barcode)
        if args.json:
            body = {
                "barcode": args.barcode,
                "location": None if location is None else location_json(location),
                "history": [event_json(e) for e in history],
            }
            print(json.dumps(body, indent=2, ensure_ascii=False))
        else:
            if location is None:
                print(f"{args.barcode}: not in the ledger")
            else:
                print(
                    f"{args.barcode}: {location.store} / {location.rack} / {location.position}"
                    f" since {location.ts} ({location.controller} seq {location.seq})"
                )
            for event in history:
                body = event_json(event)
                source = body.get("from")
                where_from = (
                    "/".join(str(source.get(k, "")) for k in ("store", "rack", "position"))
                    if isinstance(source, dict)
                    else "intake"
                )
                where_to = f"{event.to_store}/{event.to_rack}/{event.to_position}"
                print(
                    f"  {event.ts}  {where_from} -> {where_to}  "
                    f"by {body.get('operator')} job {body.get('job')}  "
                    f"({event.controller} seq {event.seq})"
                )
        return 0 if location is not None else 1

    return _with_store(args, work)


def _verify(args: argparse.Namespace) -> int:
    report = _with_store(args, verify_store)
    for controller, count in sorted(report.events.items()):
        print(f"{controller}: {count} event(s) verified, head {report.heads[controller]}")
    print(f"locations: {report.locations} checked")
    for problem in report.problems:
        print(f"BROKEN {problem}")
    if report.ok:
        print("ledger OK")
    return 0 if report.ok else 1


def _write_csv(out: TextIO, store: Store) -> Callable[[], Awaitable[int]]:
    async def work() -> int:
        rows = await store.locations()
        writer = csv.writer(out)
        writer.writerow(["barcode", "store", "rack", "position", "since", "controller", "seq"])
        for r in rows:
            writer.writerow([r.barcode, r.store, r.rack, r.position, r.ts, r.controller, r.seq])
        return len(rows)

    return work


def _export(args: argparse.Namespace) -> int:
    if args.output is None:
        _with_store(args, lambda store: _write_csv(sys.stdout, store)())
        return 0
    with args.output.open("w", newline="", encoding="utf-8") as out:
        count = _with_store(args, lambda store: _write_csv(out, store)())
    print(f"{count} location(s) written to {args.output}", file=sys.stderr)
    return 0


def _quarantine(args: argparse.Namespace) -> int:
    async def work(store: Store) -> int:
        entries = await (store.quarantine() if args.all else store.open_quarantine())
        for e in entries:
            print(
                f"#{e.id} {e.state} {e.received_at} {e.controller} seq {e.seq} "
                f"[{e.kind}] {e.reason}"
            )
        return 1 if any(e.state == "open" for e in entries) else 0

    return _with_store(args, work)


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}"
    )
    parser.add_argument("--store", default=None, help="store URL (instead of the config's)")
    parser.add_argument("--schema", default=None, help="PostgreSQL schema (default: config's)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inventoryd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"inventoryd {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service (systemd ExecStart)")
    run.add_argument("-c", "--config", type=Path, required=True, help="inventory config (TOML)")
    run.set_defaults(func=_run)

    check = sub.add_parser("check-config", help="validate a config file; exit 2 on problems")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check_config)

    where = sub.add_parser("where", help="a barcode's current location and full history")
    where.add_argument("barcode")
    where.add_argument("--json", action="store_true", help="print JSON")
    _store_args(where)
    where.set_defaults(func=_where)

    verify = sub.add_parser("verify", help="re-check every chain; exit 1 naming broken links")
    _store_args(verify)
    verify.set_defaults(func=_verify)

    export = sub.add_parser("export", help="CSV of every barcode's current location")
    export.add_argument("-o", "--output", type=Path, default=None, help="file (default stdout)")
    _store_args(export)
    export.set_defaults(func=_export)

    quarantine = sub.add_parser("quarantine", help="list quarantined movements (exit 1: open)")
    quarantine.add_argument("--all", action="store_true", help="released ones too")
    _store_args(quarantine)
    quarantine.set_defaults(func=_quarantine)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
