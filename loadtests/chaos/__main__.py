"""python -m loadtests.chaos: see loadtests/chaos/__init__.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loadtests import chaos
from loadtests.chaos.soak import RECOVERY_LIMIT_S, soak

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.chaos", description=chaos.__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "chaos")
    parser.add_argument("--model_dir", default=None, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--recovery_limit_s", type=float, default=RECOVERY_LIMIT_S,
                        help="longest allowed time from a fault until a request succeeds again")
    args = parser.parse_args(argv)
    from hfserve.packaged_model import packaged_model_dir

    summary = soak(args.minutes, args.seed, args.model_dir or str(packaged_model_dir()), args.out, args.users,
                   args.recovery_limit_s)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("faults", "memory")}, indent=2))
    print(f"chaos: {summary['requests']} requests, {summary['fault_count']} faults, {summary['lost']} lost; "
          f"{'PASS' if summary['passed'] else 'FAIL'}; {args.out / 'summary.json'}, {args.out / 'timeline.png'}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
