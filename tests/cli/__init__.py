"""`gateway-admin` run as a real subprocess against the test databases."""
