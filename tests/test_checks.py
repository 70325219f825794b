import numpy as np
import pytest
import torch

from lrlab import checks
from lrlab.checks import CheckFailure


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckFailure) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_check_failure_is_an_assertion_error_so_nbgrader_counts_it():
    assert issubclass(CheckFailure, AssertionError)


def test_check_close_says_expected_got_and_hint():
    text = message(checks.check_close, 0.0, 1e-5, "warmup(0)", hint="LR must be > 0 at the first step")
    assert "warmup(0): wrong value" in text
    assert "expected: 1e-05" in text and "got:      0" in text
    assert "Hint: LR must be > 0" in text


def test_check_close_passes_within_tolerance_and_on_tensors():
    checks.check_close(1.0 + 1e-9, 1.0, "x")
    checks.check_close(torch.tensor([1.0, 2.0]), np.array([1.0, 2.0]), "t")
    checks.check_close(float("nan"), float("nan"), "nan equals nan")


def test_check_close_reports_shape_and_first_difference():
    assert "wrong shape" in message(checks.check_close, torch.zeros(2, 3), torch.zeros(3, 2), "m")
    text = message(checks.check_close, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.5, 3.0]), "v")
    assert "1 of 3 places" in text and "index (1,)" in text


def test_check_close_rejects_non_numbers_and_nan():
    assert "expected a number" in message(checks.check_close, "1.0", 1.0, "s")
    assert "expected a number" in message(checks.check_close, None, 1.0, "s")
    assert "NaN or inf" in message(checks.check_close, torch.tensor([float("nan")]), torch.tensor([1.0]), "n")


def test_check_shape_type_equal_and_check():
    checks.check_shape(torch.zeros(2, 3), (2, 3), "z")
    assert "wrong shape" in message(checks.check_shape, torch.zeros(3), (2, 3), "z")
    assert "expected a tensor" in message(checks.check_shape, [1, 2], (2,), "z")
    assert "wrong type" in message(checks.check_type, 1, float, "f")
    checks.check_equal(torch.tensor([1, 2]), torch.tensor([1, 2]), "e")
    assert "wrong value" in message(checks.check_equal, [1, 2], [2, 1], "e")
    assert "custom problem" in message(checks.check, False, "c", problem="custom problem")


def test_check_raises():
    checks.check_raises(lambda: int("x"), ValueError, "int('x')")
    assert "no error was raised" in message(checks.check_raises, lambda: 1, ValueError, "f")
    assert "wrong error" in message(checks.check_raises, lambda: 1 / 0, ValueError, "f")


def test_check_choice_accepts_letters_and_explains_bad_answers():
    checks.check_choice(" c ", "ABCD", "Q")
    assert "no answer yet" in message(checks.check_choice, None, "ABCD", "Q")
    assert "not one of the options" in message(checks.check_choice, "E", "ABCD", "Q")
    assert "not one of the options" in message(checks.check_choice, 2, "ABCD", "Q")


def test_passed_prints_the_line_learners_look_for(capsys):
    checks.passed("center_columns")
    assert capsys.readouterr().out.strip() == "\u2714 center_columns: the visible tests pass."
