"""Transactional email: message texts, SMTP or outbox delivery, and a metadata-only log."""
