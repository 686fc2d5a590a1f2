"""The station's network stack from the vendor article: DHCP lease, DNS priority
resolver, NTP clock, links (Ethernet/WiFi/LTE) with failover, byte accounting."""
