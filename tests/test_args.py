"""Tests of lrlab.args (argument validation) and lrlab.tables (plain-text tables)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from lrlab.args import check_bool, check_choice, check_instance, check_int, check_real, describe_range
from lrlab.tables import format_table


# --------------------------------------------------------------------------------------------- check_int
def test_check_int_accepts_python_and_numpy_integers():
    assert check_int(3, "n") == 3 and type(check_int(np.int64(3), "n")) is int
    assert check_int(0, "n", low=0, high=0) == 0


@pytest.mark.parametrize("value", [True, False, 3.0, "3", None, np.float64(3.0)])
def test_check_int_rejects_bool_and_non_integers(value):
    expected = f"epochs must be an integer >= 1, got {value!r} ({type(value).__name__})"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        check_int(value, "epochs", low=1)


def test_check_int_bounds_name_argument_value_and_range():
    with pytest.raises(ValueError, match=r"^n must be an integer in \[2, 5\], got 6$"):
        check_int(6, "n", low=2, high=5)
    with pytest.raises(ValueError, match=r"^n must be an integer in \[2, 5\], got 1 \(rows\)$"):
        check_int(1, "n", low=2, high=5, hint="rows")
    with pytest.raises(ValueError, match=r"^k must be an integer <= 3, got 4$"):
        check_int(4, "k", high=3)


# --------------------------------------------------------------------------------------------- check_real
def test_check_real_accepts_ints_floats_numpy():
    assert check_real(1, "lr") == 1.0 and type(check_real(np.float32(0.5), "lr")) is float
    assert check_real(math.inf, "x", finite=False) == math.inf


@pytest.mark.parametrize("value", [True, "0.1", None, [0.1]])
def test_check_real_rejects_bool_and_non_numbers(value):
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got .* \(\w+\)$"):
        check_real(value, "lr", low=0, low_open=True)


def test_check_real_bounds_open_and_closed():
    assert check_real(0.0, "beta", low=0, high=1, high_open=True) == 0.0
    with pytest.raises(ValueError, match=r"^beta must be a finite number in \[0, 1\), got 1.0$"):
        check_real(1.0, "beta", low=0, high=1, high_open=True)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got 0.0$"):
        check_real(0.0, "lr", low=0, low_open=True)
    with pytest.raises(ValueError, match=r"got nan"):
        check_real(math.nan, "x", finite=False)
    with pytest.raises(ValueError, match=r"^x must be a finite number, got inf$"):
        check_real(math.inf, "x")
    assert describe_range() == "" and describe_range(None, 2, high_open=True) == "< 2"
    assert describe_range(0, 2**32 - 1) == "in [0, 4294967295]" and describe_range(0.5) == ">= 0.5"


# --------------------------------------------------------------------------------------------- others
def test_check_bool_rejects_ints_and_strings():
    assert check_bool(False, "drop_last") is False
    for value in (0, 1, "yes", None, np.bool_(True)):
        with pytest.raises(ValueError, match=r"^drop_last must be True or False, got "):
            check_bool(value, "drop_last")


def test_check_choice_lists_the_choices():
    assert check_choice("adam", "optimizer", ("sgd", "adam")) == "adam"
    with pytest.raises(ValueError, match=r"^optimizer must be one of \('sgd', 'adam'\), got 'Adam'$"):
        check_choice("Adam", "optimizer", ("sgd", "adam"))
    with pytest.raises(ValueError, match=r"must be one of \(1, 2\), got True"):
        check_choice(True, "k", (1, 2))  # True == 1 in Python, but it is not the choice 1
    with pytest.raises(ValueError, match=r"got array"):
        check_choice(np.array([1, 2]), "k", (1, 2))
    with pytest.raises(ValueError, match=r"got \[1\]"):
        check_choice([1], "k", (1, 2))


def test_check_instance_names_the_type():
    assert check_instance(3, "x", int, "an int") == 3
    with pytest.raises(ValueError, match=r"^model must be a torch.nn.Module, got str$"):
        check_instance("m", "model", (int, float), "a torch.nn.Module")


# --------------------------------------------------------------------------------------------- tables
def test_format_table_default_layout_is_unchanged():
    out = format_table(["name", "seconds"], [["a", 1.25], ["long name", "12"]])
    assert out.splitlines() == [
        "name       seconds",
        "---------  -------",
        "a              1.2",
        "long name       12",
    ]


def test_format_table_align_and_rule_options():
    out = format_table(["Epoch", "Observation"], [["1", "fast start"], ["10", "plateau"]], align="rl", rule=False)
    assert out.splitlines() == ["Epoch  Observation", "    1  fast start", "   10  plateau"]
    with pytest.raises(ValueError, match=r"align must give one of \('l', 'r'\) for each of the 2 columns"):
        format_table(["a", "b"], [["1", "2"]], align="lrc")
    with pytest.raises(ValueError, match=r"row 1 has 1 cells but there are 2 headers"):
        format_table(["a", "b"], [["1"]])
