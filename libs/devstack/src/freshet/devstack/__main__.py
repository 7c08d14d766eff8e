"""`python -m freshet.devstack up`."""

from __future__ import annotations

import sys

from freshet.devstack.up import main

if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["up"]):
        sys.stderr.write("usage: python -m freshet.devstack [up]\n")
        raise SystemExit(2)
    raise SystemExit(main())
