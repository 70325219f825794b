"""Repository rules: one package set everywhere, notebooks without outputs, lint clean, help everywhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_name(name)] = version.strip()
    return pins


def _environment_yml() -> dict[str, str]:
    pinned = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            pinned[_name(m.group(1))] = m.group(2)
    return pinned


def _pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]


def test_environment_yml_lists_exactly_the_pyproject_packages_at_the_tested_pins():
    from packaging.requirements import Requirement

    env, pins = _environment_yml(), _pins()
    wanted = {_name(r): Requirement(r) for r in _pyproject_requirements()}
    assert set(env) == set(wanted), (
        f"environment.yml and pyproject.toml drifted: only in environment.yml {sorted(set(env) - set(wanted))}, "
        f"only in pyproject.toml {sorted(set(wanted) - set(env))}")
    for name, req in wanted.items():
        assert env[name] == pins.get(name), (
            f"{name}: environment.yml pins {env[name]}, constraints.txt {pins.get(name)}")
        assert req.specifier.contains(env[name], prereleases=True), (
            f"{name}=={env[name]} is outside pyproject's range {req.specifier}")


def _supported_pythons() -> list[str]:
    """The minor versions pyproject's requires-python accepts, e.g. ["3.11", "3.12", "3.13"]."""
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    return [f"3.{minor}" for minor in range(40) if spec.contains(f"3.{minor}.0")]


def test_the_supported_pythons_agree_everywhere():
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    versions = _supported_pythons()
    assert versions == ["3.11", "3.12", "3.13"], f"pyproject's requires-python accepts {versions}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    conda = re.findall(r"^\s*-\s+python\s*([<>=!~].*?)\s*$", (ROOT / "environment.yml").read_text(), re.M)
    assert len(conda) == 1, f"environment.yml should name python once, with a version range; found {conda}"
    try:
        same = SpecifierSet(conda[0]) == SpecifierSet(requires)
    except InvalidSpecifier:
        same = False
    assert same, f"environment.yml asks for python{conda[0]}, pyproject.toml for {requires}"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^SUPPORTED_PYTHONS := (.*)$", makefile, re.M).group(1).split() == versions
    candidates = re.search(r"^PYTHON_CANDIDATES := (python3 .*)$", makefile, re.M).group(1).split()
    assert sorted(candidates[1:]) == sorted(f"python{v}" for v in versions), f"the Makefile tries {candidates}"
    need = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("You need"))
    assert re.findall(r"3\.\d+", need) == versions, f"README says: {need}"
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert sorted(re.findall(r'python: "(3\.\d+)"', ci)) == versions, "ci.yml's matrix is not the supported set"
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["target-version"]
    assert ruff == "py" + versions[0].replace(".", ""), f"ruff targets {ruff}, the oldest supported is {versions[0]}"


def test_constraints_pin_every_requirement():
    pins = _pins()
    missing = [_name(r) for r in _pyproject_requirements() if _name(r) not in pins]
    assert not missing, f"constraints.txt has no pin for {missing}"
    assert pins["torch"] == "2.13.0"


def _tracked(pattern: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=True)
    return [p for p in out.stdout.split() if (ROOT / p).exists()]


def test_committed_notebooks_carry_no_outputs_or_execution_counts():
    notebooks = _tracked("*.ipynb")
    assert notebooks, "no notebooks are tracked"
    dirty = []
    for path in notebooks:
        nb = json.loads((ROOT / path).read_text(encoding="utf-8"))
        assert nb["nbformat"] == 4 and nb["nbformat_minor"] == 5, f"{path} is not nbformat 4.5"
        assert nb["metadata"]["kernelspec"]["name"] == "python3", f"{path} does not use the python3 kernel"
        for cell in nb["cells"]:
            if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
                dirty.append(path)
                break
    assert not dirty, f"notebooks committed with outputs or execution counts: {dirty}"


def test_every_notebook_has_a_parameters_cell_with_seed_and_device():
    for path in _tracked("source/*.ipynb") + _tracked("notebooks/*.ipynb"):
        nb = json.loads((ROOT / path).read_text(encoding="utf-8"))
        params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1, f"{path} needs exactly one cell tagged 'parameters'"
        first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        assert first_code is params[0], f"{path}: the parameters cell must be the first code cell"
        src = "".join(params[0]["source"])
        assert re.search(r"^SEED = \d+", src, re.M) and re.search(r'^DEVICE = "auto"', src, re.M), path


def test_grade_ids_are_unique_and_tests_carry_points():
    for path in _tracked("source/*.ipynb"):
        nb = json.loads((ROOT / path).read_text(encoding="utf-8"))
        ids = [c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"] if "nbgrader" in c["metadata"]]
        assert len(ids) == len(set(ids)), f"{path} has duplicate grade_ids"
        kinds = {"code": 0, "mc": 0, "manual": 0}
        for c in nb["cells"]:
            meta = c["metadata"].get("nbgrader", {})
            if meta.get("grade"):
                assert meta.get("points", 0) > 0, f"{path}: {meta['grade_id']} has no points"
                if c["cell_type"] == "markdown":
                    kinds["manual"] += 1
                elif "check_choice" in "".join(c["source"]):
                    kinds["mc"] += 1
                else:
                    kinds["code"] += 1
                    assert "BEGIN HIDDEN TESTS" in "".join(c["source"]), (
                        f"{path}: {meta['grade_id']} has no hidden tests")
        assert kinds["code"] >= 3 and kinds["mc"] >= 1 and kinds["manual"] >= 1, f"{path}: {kinds}"


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "utils", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("command", [[], ["release"], ["run"], ["validate"], ["grade"]])
def test_every_command_has_help(command):
    proc = subprocess.run([sys.executable, "-m", "lrlab", *command, "--help"], cwd=ROOT, capture_output=True,
                          text=True)
    if command == ["grade"] and "invalid choice" in proc.stderr:
        pytest.skip("the grade command is not part of this checkout")
    assert proc.returncode == 0, proc.stderr
    assert "usage: lrlab" in proc.stdout


def test_repo_names_no_machine_paths():
    offenders = []
    for path in _tracked("*"):
        if path.endswith((".png", ".db")) or path == "tests/test_repo.py":
            continue
        text = (ROOT / path).read_text(encoding="utf-8", errors="ignore")
        # paths of the machines the course was built on (a sandbox's own /tmp or /home paths are fine)
        if re.search(r"/work/(main|shared|authoring)|/opt/wheels|\.pyenv/|/root/|/tmp/(ci|pytest-of|rt)\b", text):
            offenders.append(path)
    assert not offenders, f"files naming a machine path: {offenders}"


def test_xdist_groups_keep_their_tests_in_one_worker(tmp_path):
    """make test runs `pytest -n ... --dist loadgroup`: the browser tests (marked by tests/conftest.py) and every
    xdist_group must each run in one worker. This broke silently twice: with pytest 9.2 (pytest-xdist#1386) and
    when the conftest hook ran after xdist had read the marks."""
    log = tmp_path / "workers.txt"
    body = "    time.sleep(0.2)\n    open({log!r}, 'a').write('{kind} ' + os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
    (tmp_path / "test_groups.py").write_text(
        "import os, time\nimport pytest\n\n"
        "@pytest.mark.browser\n@pytest.mark.parametrize('i', range(4))\ndef test_b(i):\n"
        + body.format(log=str(log), kind="b")
        + "\n@pytest.mark.xdist_group('g')\n@pytest.mark.parametrize('i', range(4))\ndef test_g(i):\n"
        + body.format(log=str(log), kind="g"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "conftest", "-q",
                           "-p", "no:cacheprovider", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    workers: dict[str, set] = {}
    for line in log.read_text().splitlines():
        kind, worker = line.split()
        workers.setdefault(kind, set()).add(worker)
    assert sorted(workers) == ["b", "g"] and all(len(w) == 1 for w in workers.values()), workers
