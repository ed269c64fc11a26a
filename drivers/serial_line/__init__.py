"""A line-oriented serial link on pyserial-asyncio-fast, shared by addressed devices.

`SerialLines` pools one `SerialLine` per port (device path, pseudo-terminal or
`socket://host:port`); a device's driver calls `SerialLine.exchange` with its request and a
function recognising its reply.
"""

from drivers.serial_line._link import SerialLine, SerialLines
from drivers.serial_line._open import open_serial_port
from drivers.serial_line._settings import Framer, LineSettings

__all__ = ["Framer", "LineSettings", "SerialLine", "SerialLines", "open_serial_port"]
