"""Signed-in browser sessions: server-side rows keyed by a hash of the cookie value."""
