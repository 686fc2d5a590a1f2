"""PlugStream: an open-source EV charging network speaking OCPP 1.6J, 2.0.1 and 2.1."""

__version__ = "0.1.0"
