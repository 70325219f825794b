"""Start-up time of the ``lrlab`` command: ``lrlab --help`` (and ``lrlab grade --help``) beside ``python -c pass``.

Both sides start a fresh interpreter, alternately, in the same run; the difference is what the command line adds
to a bare Python start (it must not import Jupyter, nbgrader or PyTorch to print its help).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_EXTRA_S = 0.3  # lrlab --help at most this many seconds above `python -c pass`


def _command() -> list[str]:
    script = Path(sys.executable).parent / "lrlab"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lrlab"]


def _seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return seconds


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 9
    baseline_cmd = [sys.executable, "-c", "pass"]
    rows = []
    for args in (["--help"], ["grade", "--help"]):
        candidate_cmd = _command() + args
        base, cand = [], []
        for _ in range(repeats):
            base.append(_seconds(baseline_cmd))
            cand.append(_seconds(candidate_cmd))
        b, c = statistics.median(base), statistics.median(cand)
        rows.append({
            "benchmark": f"lrlab {' '.join(args)} start-up",
            "baseline": "python -c pass", "baseline_s": b,
            "candidate": f"lrlab {' '.join(args)}", "candidate_s": c,
            "ratio": c / b, "target": f"<= +{TARGET_EXTRA_S} s", "ok": c - b <= TARGET_EXTRA_S,
            "note": f"{c - b:+.3f} s above python -c pass; wall s, median of {repeats}, alternating",
        })
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
