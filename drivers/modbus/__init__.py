"""Modbus device descriptions, pure: link configs, register maps and the register codec.

No I/O here (the simulators reuse it); the driver on pymodbus is `drivers.modbus_client`.
"""

from drivers.modbus._config import ModbusLinkConfig, ModbusRtuConfig, ModbusTcpConfig
from drivers.modbus._registers import (
    MAX_READ_REGISTERS,
    MapDecoder,
    ReadBlock,
    RegisterSpec,
    RegisterTable,
    RegisterType,
    SensorFault,
    WordOrder,
    check_register_map,
    decode_block,
    decode_block_into,
    decode_value,
    encode_raw,
    encode_value,
    plan_reads,
    values_by_name,
)

__all__ = [
    "MAX_READ_REGISTERS",
    "MapDecoder",
    "ModbusLinkConfig",
    "ModbusRtuConfig",
    "ModbusTcpConfig",
    "ReadBlock",
    "RegisterSpec",
    "RegisterTable",
    "RegisterType",
    "SensorFault",
    "WordOrder",
    "check_register_map",
    "decode_block",
    "decode_block_into",
    "decode_value",
    "encode_raw",
    "encode_value",
    "plan_reads",
    "values_by_name",
]
