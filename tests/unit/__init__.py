"""Pure domain code: no database, no network."""
