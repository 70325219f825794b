"""Run every benchmark and print one table of measured ratios: ``python -m benchmarks [--quick] [NAME...]``."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(discover())})")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes (a smoke run)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    names = args.names or discover()
    unknown = [n for n in names if n not in discover() and f"bench_{n}" not in discover()]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {discover()}")
    from lrlab.tables import format_table

    rows, failures = [], []
    for name in names:
        module = name if name.startswith("bench_") else f"bench_{name}"
        start = time.perf_counter()
        try:
            mod = importlib.import_module(f"benchmarks.{module}")
            got = mod.run(quick=args.quick)
        except Exception as err:  # noqa: BLE001 - one broken benchmark must not hide the others
            failures.append(f"{module}: {type(err).__name__}: {err}")
            continue
        print(f"[{module}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
        rows += got
    table = [(r["benchmark"], r["baseline"], f"{r['baseline_s']:.4g}", r["candidate"], f"{r['candidate_s']:.4g}",
              f"{r['ratio']:.2f}", r["target"], "yes" if r["ok"] else "NO", r.get("note", "")) for r in rows]
    print(format_table(["benchmark", "baseline", "s", "candidate", "s", "ratio", "target", "met", "note"], table))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    for f in failures:
        print(f"benchmark failed to run: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
