"""PlugStream's station against an independent ``ocpp``-library CSMS and against PlugStream Cloud."""
