"""Argument validation shared by the learner library (imports nothing from lrlab, nor numpy or torch).

Every check returns the cleaned value or raises a ``ValueError`` that names the argument, shows the
value it got and says what is allowed, e.g. ``epochs must be an integer >= 1, got 0``. A ``bool`` is
never accepted where a number is wanted (``True`` is an ``int`` in Python, but ``epochs=True`` is a
mistake). NumPy scalars count as numbers (NumPy registers them with :mod:`numbers`).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real
from typing import Any

__all__ = ["check_bool", "check_choice", "check_instance", "check_int", "check_real", "describe_range"]


def _hint(hint: str) -> str:
    return f" ({hint})" if hint else ""


def describe_range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> str:
    """The allowed range in words: ``">= 1"``, ``"> 0"``, ``"<= 5"``, ``"in [0, 1)"`` or ``""`` (no bound)."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_num(high)}"
    return ""


def _num(bound: float) -> str:
    """Integers exactly (a seed bound of 2**32 - 1 stays 4294967295), other numbers in short form."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _in_range(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if low is not None and (value <= low if low_open else value < low):
        return False
    return not (high is not None and (value >= high if high_open else value > high))


def check_int(
    value: Any, name: str, *, low: int | None = None, high: int | None = None, hint: str = ""
) -> int:
    """``value`` as an ``int`` within ``[low, high]`` (either bound may be None).

    Accepts Python and NumPy integers; rejects ``bool``, floats (even ``3.0``) and everything else.
    ``hint`` is appended in parentheses to the message (e.g. what the argument means).
    """
    allowed = " ".join(filter(None, ("an integer", describe_range(low, high))))
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__}){_hint(hint)}")
    value = int(value)
    if not _in_range(value, low, high, False, False):
        raise ValueError(f"{name} must be {allowed}, got {value!r}{_hint(hint)}")
    return value


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    hint: str = "",
) -> float:
    """``value`` as a ``float`` within the given bounds (``low_open``/``high_open`` exclude the bound).

    Accepts Python and NumPy integers and floats; rejects ``bool``, strings, tensors and everything
    else. NaN is always rejected; infinities unless ``finite=False``.
    """
    words = "a finite number" if finite else "a number"
    allowed = " ".join(filter(None, (words, describe_range(low, high, low_open=low_open, high_open=high_open))))
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__}){_hint(hint)}")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)) or not _in_range(value, low, high, low_open, high_open):
        raise ValueError(f"{name} must be {allowed}, got {value!r}{_hint(hint)}")
    return value


def check_bool(value: Any, name: str, *, hint: str = "") -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0/1, not a string such as ``"yes"``)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__}){_hint(hint)}")
    return value


def check_choice(value: Any, name: str, choices: Collection[Any], *, hint: str = "") -> Any:
    """``value`` if it is one of ``choices`` (compared with ``==``; ``True`` is not taken for ``1``)."""
    options = tuple(choices)
    if not any(_same(value, c) for c in options):
        raise ValueError(f"{name} must be one of {options}, got {value!r}{_hint(hint)}")
    return value


def _same(value: Any, choice: Any) -> bool:
    if isinstance(value, bool) != isinstance(choice, bool):
        return False
    try:
        return bool(value == choice)
    except (TypeError, ValueError):  # e.g. an array compared element-wise
        return False


def check_instance(value: Any, name: str, types: type | tuple[type, ...], what: str, *, hint: str = "") -> Any:
    """``value`` if it is an instance of ``types``; ``what`` says what is wanted in words."""
    if not isinstance(value, types):
        raise ValueError(f"{name} must be {what}, got {type(value).__name__}{_hint(hint)}")
    return value
