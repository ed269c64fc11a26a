"""The inventory's exception tree.

InventoryError
├── ConfigError        a config file is unreadable or invalid (every problem, with its path)
├── StoreError         the ledger database failed (driver errors are translated to this)
│   └── StoreUnavailable   it cannot be reached at all (retried by the service)
└── QueryError         a query request is invalid (the reply says why)
"""

from __future__ import annotations


class InventoryError(Exception):
    """Base of every error the inventory raises on purpose."""


class ConfigError(InventoryError):
    """A config file is unreadable or invalid; `problems` names each one with its TOML path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


class StoreError(InventoryError):
    """The ledger database failed; `url` names it (without a password)."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class StoreUnavailable(StoreError):
    """The ledger database cannot be reached (down, refused, timed out)."""


class QueryError(InventoryError):
    """A query request is invalid; the message is the reply's `error`."""
