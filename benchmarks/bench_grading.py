"""Speed of ``lrlab grade`` against plain nbgrader, and the cost of its sandbox.

Rows (assignment ``00_pytorch_warmup``, every submission a copy of the reference solution):

* grading 20 submissions: a sequential ``nbgrader autograde`` against ``lrlab grade --jobs 2``
  (sandboxed, with feedback and the grades CSV); target >= 1.6x faster on 2 cores;
* the sandbox's own cost: ``lrlab grade --jobs 2`` against ``lrlab grade --jobs 2 --unsafe`` (same work,
  no bubblewrap); target <= 1.10x, i.e. at most 10 % more time per submission.

Each side runs as the command an instructor types, in its own throwaway copy of the course (so both
start from the same gradebook and neither finds the other's results), and the two sides alternate. Wall
time is what is compared (grading is parallel, so CPU time would hide the gain); the note gives the CPU
seconds of the unsandboxed side's process tree (a sandboxed kernel's CPU time is not reported back to the
grader, its box is killed, not waited for). Timings on a machine shared with other work are noisy.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "00_pytorch_warmup"


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def make_course(dest: Path, students: int) -> Path:
    """A copy of the course's config, source and release of ASSIGNMENT, its gradebook, and ``students``
    submissions equal to the reference solution (student ids s00, s01, ...)."""
    dest.mkdir(parents=True)
    shutil.copy2(ROOT / "nbgrader_config.py", dest / "nbgrader_config.py")
    for sub in ("source", "release"):
        shutil.copytree(ROOT / sub / ASSIGNMENT, dest / sub / ASSIGNMENT)
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force",
                    "--log-level=ERROR"], cwd=dest, env=_env(), check=True, capture_output=True)
    reference = dest / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    for k in range(students):
        folder = dest / "submitted" / f"s{k:02d}" / ASSIGNMENT
        folder.mkdir(parents=True)
        shutil.copy2(reference, folder / f"{ASSIGNMENT}.ipynb")
    return dest


def _reset(course: Path) -> None:
    """Forget earlier results, so every timed run grades everything again (nbgrader skips graded work)."""
    for name in ("autograded", "feedback", "grades"):
        shutil.rmtree(course / name, ignore_errors=True)


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all descendants) of a command, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def nbgrader_autograde(course: Path) -> tuple[float, float]:
    _reset(course)
    return _timed([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--log-level=ERROR"], course)


def lrlab_grade(course: Path, jobs: int, unsafe: bool = False) -> tuple[float, float]:
    _reset(course)
    cmd = [sys.executable, "-m", "lrlab", "--root", str(course), "grade", ASSIGNMENT, "--jobs", str(jobs)]
    return _timed(cmd + (["--unsafe"] if unsafe else []), course)


def _pair(base, cand, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median (wall, cpu) of each side, run alternately."""
    b, c = [], []
    for _ in range(repeats):
        b.append(base())
        c.append(cand())
    med = lambda runs: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))  # noqa: E731
    return med(b), med(c)


def run(quick: bool = False) -> list[dict]:
    from lrlab.course.grading import sandbox as sb

    students = 4 if quick else 20
    repeats = 1 if quick else 2
    sandboxed = sb.sandbox_problem() is None
    rows = []
    with tempfile.TemporaryDirectory(prefix="lrlab-bench-grading-") as tmp:
        plain = make_course(Path(tmp) / "plain", students)
        ours = make_course(Path(tmp) / "ours", students)
        (bw, bc), (cw, cc) = _pair(lambda: nbgrader_autograde(plain), lambda: lrlab_grade(ours, 2, not sandboxed),
                                   repeats)
        rows.append({
            "benchmark": f"grade {students} submissions of {ASSIGNMENT}",
            "baseline": "nbgrader autograde (sequential)", "baseline_s": bw,
            "candidate": "lrlab grade --jobs 2" + ("" if sandboxed else " --unsafe"), "candidate_s": cw,
            "ratio": bw / cw, "target": ">= 1.6x", "ok": bw / cw >= 1.6,
            "note": f"wall s, median of {repeats}; nbgrader used {bc:.0f} CPU s; candidate includes feedback + CSV"
                    + ("" if sandboxed else f"; NO SANDBOX HERE: {sb.sandbox_problem()}"),
        })
        if sandboxed:
            (uw, uc), (sw, sc) = _pair(lambda: lrlab_grade(ours, 2, unsafe=True), lambda: lrlab_grade(ours, 2),
                                       repeats)
            rows.append({
                "benchmark": f"sandbox overhead, {students} submissions",
                "baseline": "lrlab grade --jobs 2 --unsafe", "baseline_s": uw,
                "candidate": "lrlab grade --jobs 2 (bubblewrap)", "candidate_s": sw,
                "ratio": sw / uw, "target": "<= 1.10x", "ok": sw / uw <= 1.10,
                "note": f"wall s, median of {repeats}; {1000 * (sw - uw) / students:+.0f} ms per submission; "
                        f"--unsafe used {uc:.0f} CPU s",
            })
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
