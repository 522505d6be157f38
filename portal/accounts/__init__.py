"""People with an account: identity, password, verification state."""
