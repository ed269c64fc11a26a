"""The simulated robotic tube store: a pure model and its asyncua server (docs/store-opcua.md)."""

from simulators.store._fleet import StoreFleet, store_rng
from simulators.store._model import MODEL_FAULTS, StoreModel, StoreRejected, seed_racks
from simulators.store._server import STORE_FAULTS, SimulatedStore

__all__ = [
    "MODEL_FAULTS",
    "STORE_FAULTS",
    "SimulatedStore",
    "StoreFleet",
    "StoreModel",
    "StoreRejected",
    "seed_racks",
    "store_rng",
]
