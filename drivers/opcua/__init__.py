"""The tube store driver on asyncua: browse by name, subscriptions, methods, reconnects.

See docs/store-opcua.md for the model; `drivers.opcua_model` holds its names and config.
"""

from drivers.opcua._driver import ConnectListener, OpcUaStoreDriver
from drivers.opcua._errors import SecurityRefused, translate

__all__ = ["ConnectListener", "OpcUaStoreDriver", "SecurityRefused", "translate"]
