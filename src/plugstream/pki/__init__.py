"""The PKI: CSMS and manufacturer root CAs, station and server certificates,
firmware-signing keys."""
