"""PlugStream Cloud, the CSMS: OCPP gateway, services, storage, bus, REST API,
dashboard, firmware repository and the setup (provisioning) service."""
