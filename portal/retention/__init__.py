"""Data retention: what is removed or unlinked from people, and when.

`rules.build_rules` lists the rules (one per kind of row, windows from config.yaml
`workforce_gateway.retention`); `service.run_retention` applies them, or with
`dry_run` only counts. Run it daily: `gateway-admin retention run [--dry-run]`.
A new table with personal data gets a rule in `rules.py`.
"""
