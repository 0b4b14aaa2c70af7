"""A longer fuzz of the JSON decoders than the test suite's (tests/unit/test_decoding_fuzz.py).

    python -m bench.fuzz_decoders [--examples 20000] [--seed N]

Drives the same hostile trees (``tests.decoding_fuzz``) through every decoding path a worker
or caller uses and prints how the outcomes split. Any exception other than
``SerializationError``, or any side effect, stops the run with the failing tree (hypothesis
shrinks it first).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, seed, settings

from tests.decoding_fuzz import check, trees


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    seen: collections.Counter[str] = collections.Counter()

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(trees)
    def run(tree: Any) -> None:
        seen[check(tree)] += 1

    began = time.perf_counter()
    run()
    took = time.perf_counter() - began
    total = sum(seen.values())
    print(f"{total} trees in {took:.1f} s ({total / took:,.0f}/s), seed {args.seed}")
    print("| outcome (loads / tree / arguments) | trees | share |")
    print("|---|---:|---:|")
    for outcome, count in seen.most_common():
        print(f"| {outcome} | {count} | {count / total:.1%} |")
    print("no exception but SerializationError, no side effect")


if __name__ == "__main__":
    main()
