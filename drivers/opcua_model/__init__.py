"""Pure: the tube store's OPC UA information model and the OPC UA link config (no I/O).

Shared by the client driver (`drivers.opcua`) and the store simulator; see docs/store-opcua.md.
"""

from drivers.opcua_model import _model as names
from drivers.opcua_model._config import OpcUaConfig, OpcUaSecurity
from drivers.opcua_model._model import (
    NAMESPACE_URI,
    OUTPUT_PORT,
    POSITIONS,
    DoorState,
    FaultCode,
    Inventory,
    OperationResult,
    RackRecord,
    StoreState,
    tubes_from_array,
    tubes_to_array,
)

__all__ = [
    "NAMESPACE_URI",
    "OUTPUT_PORT",
    "POSITIONS",
    "DoorState",
    "FaultCode",
    "Inventory",
    "OpcUaConfig",
    "OpcUaSecurity",
    "OperationResult",
    "RackRecord",
    "StoreState",
    "names",
    "tubes_from_array",
    "tubes_to_array",
]
