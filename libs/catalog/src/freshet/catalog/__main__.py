"""`python -m freshet.catalog migrate [--url URL]` (URL defaults to FRESHET_DATABASE_URL)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from freshet.catalog.database import redact
from freshet.catalog.migrate import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freshet.catalog")
    parser.add_argument("command", choices=["migrate"])
    parser.add_argument("--url", default=os.environ.get("FRESHET_DATABASE_URL"))
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no database URL: pass --url or set FRESHET_DATABASE_URL")
    asyncio.run(migrate(args.url))
    sys.stdout.write(f"catalog migrated: {redact(args.url)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
