"""The device model of each 2.0.1 station (B) and the events it reports (N07): NotifyReport
and NotifyEvent kept (handlers.py), and the REST resource (api.py)."""
