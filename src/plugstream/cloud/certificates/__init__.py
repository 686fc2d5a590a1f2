"""Certificate management on PlugStream Cloud: CSR signing (:mod:`.signing`), the OCPP
handlers (:mod:`.handlers`) and the REST routes (:mod:`.api`)."""
