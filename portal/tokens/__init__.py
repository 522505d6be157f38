"""Gateway access tokens: minted once, stored as a hash, revocable at once."""
