"""controllerd: the controller daemon of a biobank cold-storage room."""

__version__ = "0.1.0"
