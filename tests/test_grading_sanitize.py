"""Grading phase 1, sanitizing (lrlab.course.grading.sanitize): nbgrader's sanitizing steps plus lrlab's repairs
put back what a learner changed or deleted in test and read-only cells, and say so in words."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from hostile import ASSIGNMENT, SQUARE_TESTS, build_toy_course, cell_by_id, reference_notebook

from lrlab.course.grading import gradebook, sanitize


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return build_toy_course(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def config(course):
    return gradebook.load_config(course)


def _sanitized(config, nb, tmp_path: Path):
    path = tmp_path / "submitted" / "s1" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return sanitize.sanitize(config, path, "s1", ASSIGNMENT, ASSIGNMENT)


def _ids(nb) -> list[str]:
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]


def test_an_honest_notebook_is_left_as_it_is(course, config, tmp_path):
    honest = reference_notebook(course)
    nb, reasons = _sanitized(config, honest, tmp_path)
    assert reasons == []
    assert _ids(nb) == _ids(honest)
    assert cell_by_id(nb, "square").source == cell_by_id(honest, "square").source
    assert "HIDDEN-SQUARE" in cell_by_id(nb, "square_tests").source  # the hidden tests are back for grading
    again, _ = _sanitized(config, honest, tmp_path / "again")
    assert sanitize.signature(nb) == sanitize.signature(again)


def test_changed_metadata_is_restored_from_the_gradebook(course, config, tmp_path):
    nb = reference_notebook(course)
    cell_by_id(nb, "square_tests").metadata["nbgrader"]["grade"] = False
    cell_by_id(nb, "mean_tests").metadata["nbgrader"]["points"] = 100
    out, reasons = _sanitized(config, nb, tmp_path)
    assert "the nbgrader metadata of cell 'square_tests' was changed; restored from the gradebook" in reasons
    assert "the nbgrader metadata of cell 'mean_tests' was changed; restored from the gradebook" in reasons
    assert cell_by_id(out, "square_tests").metadata["nbgrader"]["grade"] is True
    assert cell_by_id(out, "mean_tests").metadata["nbgrader"]["points"] == 3.0


def test_an_edited_test_gets_its_original_back(course, config, tmp_path):
    nb = reference_notebook(course)
    cell_by_id(nb, "square_tests").source = 'print("all tests pass")'
    out, reasons = _sanitized(config, nb, tmp_path)
    assert "cell 'square_tests' was edited; the original was restored" in reasons
    assert cell_by_id(out, "square_tests").source == SQUARE_TESTS


def test_deleted_cells_come_back_in_place_and_deleted_answers_are_named(course, config, tmp_path):
    nb = reference_notebook(course)
    nb.cells = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] not in ("setup", "square_tests", "mean")]
    out, reasons = _sanitized(config, nb, tmp_path)
    assert "test cell 'square_tests' was deleted; restored from the source and run" in reasons
    assert "read-only cell 'setup' was deleted; restored from the source and run" in reasons
    assert "answer cell 'mean' was deleted; it scores 0" in reasons
    assert _ids(out) == ["intro", "setup", "square", "square_tests", "mean_tests", "explain"]


def test_unknown_grading_metadata_makes_an_ordinary_cell(course, config, tmp_path):
    nb = reference_notebook(course)
    test = cell_by_id(nb, "square_tests")
    test.metadata["nbgrader"]["grade_id"] = "my_own_test"
    test.source = "pass"
    out, reasons = _sanitized(config, nb, tmp_path)
    assert any("cell 'my_own_test' carries nbgrader metadata the gradebook does not know" in r for r in reasons)
    assert "my_own_test" not in _ids(out)
    assert cell_by_id(out, "square_tests").source == SQUARE_TESTS  # and the real test is back


def test_the_chain_puts_lrlab_repairs_around_nbgraders_steps(config):
    from nbgrader.preprocessors import OverwriteCells

    chain = sanitize.sanitize_chain(config)
    assert chain[0] is sanitize.RepairGradeMetadata
    at = chain.index(OverwriteCells)
    assert chain[at + 1] is sanitize.RestoreLockedCells
    assert chain.count(sanitize.RestoreLockedCells) == 1


def test_release_source_drops_the_hidden_region_and_signature_sees_sources():
    assert "HIDDEN" not in sanitize.release_source(SQUARE_TESTS)
    assert sanitize.release_source(SQUARE_TESTS).startswith("assert square(3) == 9")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    before = sanitize.signature(nb)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1")]
    assert sanitize.signature(nb) == before  # outputs do not matter
    nb.cells[0].source = "x = 2"
    assert sanitize.signature(nb) != before


def test_collecting_logger_turns_nbgrader_warnings_into_reasons():
    logger, handler = sanitize.collecting_logger("unit")
    logger.warning("Attribute 'points' for cell mean_tests has changed! (should: 3.0, got: 100)")
    logger.warning("something else")
    logger.error("There was an error")
    assert handler.reasons == ["the points of cell 'mean_tests' were changed; restored"]
    assert handler.errors == ["There was an error"]
