"""`inventoryd where / verify / export / quarantine / check-config` as an operator runs them."""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from pathlib import Path

import pytest

from inventory._intake import Intake
from tests.inventory._chain import make_chain
from tests.inventory.conftest import StoreSpec, config_toml

pytestmark = pytest.mark.system

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


async def _inventoryd(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "inventory",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _filled(spec: StoreSpec, tmp_path: Path) -> Path:
    async with spec.open() as store:
        intake = Intake(heads={}, open_entries=[])
        batch = intake.begin()
        for event in make_chain("room-1", 12, barcodes=4):
            intake.offer("room-1", event.to_json(), known={})
        intake.offer("room-1", b"not json", known={})
        await store.apply(batch)
    config = tmp_path / "inventory.toml"
    config.write_text(config_toml(spec, port=1883))
    return config


async def test_where_verify_export_quarantine(store_spec: StoreSpec, tmp_path: Path) -> None:
    config = await _filled(store_spec, tmp_path)
    code, out, _ = await _inventoryd("where", "room-1-T0001", "-c", str(config))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("room-1-T0001: room-1-store / R02 / P00009 since ")
    assert [line.split("(")[-1] for line in lines[1:]] == [
        "room-1 seq 2)",
        "room-1 seq 6)",
        "room-1 seq 10)",
    ]
    assert "intake -> room-1-store/R01/P00001" in lines[1]
    code, out, _ = await _inventoryd("where", "nobody", "-c", str(config))
    assert (code, out.strip()) == (1, "nobody: not in the ledger")

    code, out, _ = await _inventoryd("verify", "-c", str(config))
    assert code == 0, out
    assert "room-1: 12 event(s) verified" in out
    assert out.strip().endswith("ledger OK")

    code, out, _ = await _inventoryd("export", "-c", str(config))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["barcode"] for r in rows] == [f"room-1-T{i:04d}" for i in range(4)]
    assert rows[1]["position"] == "P00009"

    code, out, _ = await _inventoryd("quarantine", "-c", str(config))
    assert code == 1
    assert "[malformed] not UTF-8 JSON" in out

    await store_spec.execute("DELETE FROM events WHERE seq = 5")
    code, out, _ = await _inventoryd("verify", "-c", str(config))
    assert code == 1
    assert "BROKEN room-1 seq 5: seq 5 is missing" in out


async def test_check_config_names_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[inventory]\nsite = "a b"\n[store]\nurl = "mysql://x"\n[mqtt]\nport = 0\n')
    code, _, err = await _inventoryd("check-config", str(bad))
    assert code == 2
    assert "inventory.site: Value error, 'a b' is not a valid id" in err
    assert "store.url: Value error, unknown store 'mysql:'" in err
    assert "mqtt.port" in err
    root = CONFIG_DIR
    for example in ("inventory.toml", "inventory.example.toml"):
        code, out, err = await _inventoryd("check-config", str(root / example))
        assert code == 0, err
        assert "valid" in out
