"""Write the GraphQL schema's SDL: `python -m freshet.gateway.graphql.sdl [PATH]` (stdout
without a path). The committed copy is `docs/api/schema.graphql`."""

from __future__ import annotations

import sys
from pathlib import Path

from freshet.gateway.graphql.schema import schema


def sdl() -> str:
    return str(schema) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python -m freshet.gateway.graphql.sdl [PATH]", file=sys.stderr)  # noqa: T201
        return 2
    if argv:
        Path(argv[0]).write_text(sdl())
    else:
        sys.stdout.write(sdl())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
