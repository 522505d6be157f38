"""Domain services against real databases (the `db` fixture: SQLite and PostgreSQL)."""
