"""The setup service: commissioning of new stations, and the owners' claims."""
