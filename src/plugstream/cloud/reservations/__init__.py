"""Reservations (2.0.1 H): made by operators, tracked to their end."""
