"""The charge point: PlugStream 7 / 22 hardware model, OCPP client, durable outbound
journal, configuration, firmware updater, provisioning, fleet simulator."""
