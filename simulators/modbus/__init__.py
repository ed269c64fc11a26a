"""Modbus for the simulators: pure framing, register banks, and the TCP and RTU servers."""

from simulators.modbus._server import ModbusRtuLine, ModbusTcpServer

__all__ = ["ModbusRtuLine", "ModbusTcpServer"]
