"""Security events on PlugStream Cloud (stub: filled by the security-events work)."""

from __future__ import annotations


class SecurityEventHandlers:
    """SecurityEventNotification, the same payload in 1.6 (security extension) and 2.0.1."""
