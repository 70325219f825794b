"""Seconds to execute each course notebook headless, beside the floor every notebook pays.

The floor is a notebook that only starts a kernel and imports torch, matplotlib and lrlab: no notebook can be
faster than that. The ratio says how much of a notebook's time is its own work.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import nbformat

from lrlab.course.layout import course_notebooks, find_root
from lrlab.course.run import run_notebooks

TARGET_SECONDS = 60.0  # "a whole notebook well under a minute" on a 2-core laptop CPU


def _floor_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('SEED = 0\nDEVICE = "auto"'),
                nbformat.v4.new_code_cell("import torch\nimport matplotlib.pyplot as plt\nimport lrlab\n"
                                          "device = lrlab.setup(SEED, DEVICE)")]
    nb.cells[0].metadata["tags"] = ["parameters"]
    path = folder / "import_floor.ipynb"
    nbformat.write(nb, path)
    return path


def run(quick: bool = False) -> list[dict]:
    root = find_root()
    with tempfile.TemporaryDirectory(prefix="lrlab-bench-") as tmp:
        tmp = Path(tmp)
        floor_nb = _floor_notebook(tmp)
        floors = []
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            res = run_notebooks(root, notebooks=[str(floor_nb)], out_dir=tmp / "floor")
            floors.append(time.perf_counter() - start)
            assert res[0].status == "ok", res[0].status
        floor = sorted(floors)[len(floors) // 2]
        rows = [{"benchmark": "import floor", "baseline": "-", "baseline_s": floor, "candidate": "kernel+imports",
                 "candidate_s": floor, "ratio": 1.0, "target": "-", "ok": True,
                 "note": "kernel start + import torch, matplotlib, lrlab"}]
        notebooks = course_notebooks(root)[:2] if quick else course_notebooks(root)
        for nb in notebooks:
            res = run_notebooks(root, notebooks=[str(nb)], out_dir=tmp / "out")[0]
            rows.append({"benchmark": f"notebook {nb.relative_to(root)}", "baseline": "import floor",
                         "baseline_s": floor, "candidate": "whole notebook", "candidate_s": res.seconds,
                         "ratio": res.seconds / floor, "target": f"< {TARGET_SECONDS:.0f} s",
                         "ok": res.status == "ok" and res.seconds < TARGET_SECONDS,
                         "note": "" if res.status == "ok" else res.status})
    return rows
