"""The inventory service: the site ledger of every specimen, fed by movement events.

Public API (see docs/inventory.md):

- `inventory.events`: the movement event model and its hash chain (shared with controllers);
- `Inventory`: the service as an async context manager; `run_inventory` runs it until a signal;
- `InventoryConfig`, `load_config`, `parse_config`: its configuration;
- `open_store`, `Store`: the ledger database (SQLite or PostgreSQL);
- `verify_store`, `VerifyReport`, `Problem`: the chain check behind `inventoryd verify`;
- `InventoryTopics`: its MQTT topics;
- the exception tree under `InventoryError`.
"""

from inventory._config import InventoryConfig, load_config, parse_config
from inventory._errors import (
    ConfigError,
    InventoryError,
    QueryError,
    StoreError,
    StoreUnavailable,
)
from inventory._service import Inventory, run_inventory
from inventory._store import Head, LocationRow, QuarantineEntry, Store, StoredEvent, open_store
from inventory._topics import InventoryTopics
from inventory._verify import Problem, VerifyReport, verify_store

__all__ = [
    "ConfigError",
    "Head",
    "Inventory",
    "InventoryConfig",
    "InventoryError",
    "InventoryTopics",
    "LocationRow",
    "Problem",
    "QuarantineEntry",
    "QueryError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredEvent",
    "VerifyReport",
    "load_config",
    "open_store",
    "parse_config",
    "run_inventory",
    "verify_store",
]
