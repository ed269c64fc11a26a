"""The LN2 controller driver on a shared serial line (I/O; the pure codec is `drivers.ln2`)."""

from drivers.ln2.client._driver import THERMOCOUPLE_OPEN, Ln2Driver, line_settings, ln2_line

__all__ = ["THERMOCOUPLE_OPEN", "Ln2Driver", "line_settings", "ln2_line"]
