"""The REST API of PlugStream Cloud, under ``/api/v1``: one router per area.

- :mod:`.stations`: list, view and register stations;
- :mod:`.messages`: a station's OCPP message log;
- :mod:`.security_events`: what stations reported and the connections the gateway refused;
- :mod:`.commands`: an operator's OCPP CALL to a connected station;
- :mod:`.transactions` and :mod:`.id_tokens`.

What they share (the bearer guard, the error bodies, the value types) is in
:mod:`.common`; :mod:`plugstream.cloud.app` includes them. The features' routers
(firmware, setup claims, certificates) live with their features.
"""
