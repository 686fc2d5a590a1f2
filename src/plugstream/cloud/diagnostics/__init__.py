"""Diagnostics (OCPP 2.0.1 block N): variable monitors, log uploads and customer
information, kept per station and managed through ``/api/v1/stations/{id}/...``."""
