"""People's rights over their data: take it all with them (export), or delete the account."""
