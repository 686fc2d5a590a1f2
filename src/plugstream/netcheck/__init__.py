"""Site readiness: checks a site's network against the vendor article and
generates the outgoing firewall allow-list."""
