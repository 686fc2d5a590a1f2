"""The network-namespace lab: a site network of real hosts on one machine (``plugstream lab``)."""
