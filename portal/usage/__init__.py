"""Per-call usage metadata (never content) and the settlement of a call into the ledger."""
