"""Prepaid credits: integer units, an append-only ledger, and reservations for calls in flight."""
