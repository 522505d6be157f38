"""Connecting an app: OAuth 2.0 authorization code + PKCE for native apps (RFC 7636,
RFC 8252). The person approves in the browser; the app trades the one-time code for a
gateway token (`docs/connect.md`)."""
