"""Modbus TCP and RTU: register maps, their codec, and the async driver on pymodbus."""

from drivers.modbus._config import ModbusLinkConfig, ModbusRtuConfig, ModbusTcpConfig
from drivers.modbus._registers import (
    MAX_READ_REGISTERS,
    ReadBlock,
    RegisterSpec,
    SensorFault,
    check_register_map,
    decode_block,
    decode_value,
    encode_raw,
    encode_value,
    plan_reads,
    values_by_name,
)

__all__ = [
    "MAX_READ_REGISTERS",
    "ModbusLinkConfig",
    "ModbusRtuConfig",
    "ModbusTcpConfig",
    "ReadBlock",
    "RegisterSpec",
    "SensorFault",
    "check_register_map",
    "decode_block",
    "decode_value",
    "encode_raw",
    "encode_value",
    "plan_reads",
    "values_by_name",
]
