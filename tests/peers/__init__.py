"""Third-party actors that PlugStream talks to, run for real on loopback by the tests."""
