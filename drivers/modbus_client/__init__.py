"""The Modbus driver on pymodbus: TCP and RTU links shared by their units, and the device driver."""

from drivers.modbus_client._driver import ModbusDriver
from drivers.modbus_client._link import ModbusLink, ModbusLinks

__all__ = ["ModbusDriver", "ModbusLink", "ModbusLinks"]
