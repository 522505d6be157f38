"""retention commands: apply the data-retention rules (`portal.retention`)."""

from __future__ import annotations

import argparse
from typing import Any

from portal.cli.common import print_json
from portal.settings import get_settings

__all__ = ["register"]


def register(groups: Any) -> None:
    retention = groups.add_parser(
        "retention", help="remove or anonymise data past its retention window"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    run = retention.add_parser(
        "run", help="apply the rules of config.yaml `retention:` (schedule daily)"
    )
    run.add_argument(
        "--dry-run", action="store_true", help="only count what each rule would change"
    )
    run.add_argument("--json", action="store_true", help="one JSON object per rule")
    run.set_defaults(handler=retention_run)


async def retention_run(args: argparse.Namespace) -> int:
    from portal.config import load_retention_settings
    from portal.db import open_database
    from portal.retention.service import run_retention

    settings = get_settings()
    # Only the `retention:` section: retention runs whatever else the file says.
    retention = load_retention_settings(settings.config_path)
    database = open_database(settings.database_url, pool_size=1)
    try:
        outcomes = await run_retention(database, retention, dry_run=args.dry_run)
    finally:
        await database.dispose()
    if args.json:
        print_json(
            [
                {"rule": o.name, "action": o.verb, "rows": o.rows, "dry_run": args.dry_run}
                for o in outcomes
            ]
        )
        return 0
    print("retention: dry run, nothing was changed" if args.dry_run else "retention: done")
    width = max(len(o.name) for o in outcomes)
    for o in outcomes:
        verb = f"would be {o.verb}" if args.dry_run else o.verb
        print(f"  {o.name:<{width}}  {o.rows:>8} {verb}  ({o.description})")
    return 0
