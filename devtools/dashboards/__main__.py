"""``python -m devtools.dashboards [--check]``: export the dashboards, or (``--check``) exit 1
when the committed JSON differs from a fresh export."""

from __future__ import annotations

import argparse
import sys

from devtools.dashboards import DASHBOARDS, OUT_DIR, export, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if not args.check:
        for path in export():
            print(f"wrote {path}")
        return 0
    stale = [
        name
        for name, build in DASHBOARDS.items()
        if not (OUT_DIR / name).exists()
        or (OUT_DIR / name).read_text(encoding="utf-8") != render(build())
    ]
    for name in stale:
        print(f"deploy/grafana/dashboards/{name} is stale: run ./dev dashboards", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
