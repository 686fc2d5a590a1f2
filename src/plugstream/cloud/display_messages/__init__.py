"""Display messages (2.0.1 O): what stations show their drivers."""
