"""Learner-facing checks: assertions that say what was expected, what came back, and a hint.

Test cells of the course call these instead of bare ``assert``. A failure raises :class:`CheckFailure`
(an ``AssertionError``, so nbgrader counts it as a failed test) whose message reads::

    linear_warmup at step 0: wrong value
        expected: 1e-05
        got:      0.0
    Hint: the first step already trains, so its LR must be above 0.

Passing cells end with :func:`passed`, which prints one line the learner can look for.

imports: nothing from lrlab (numpy and torch only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch


class CheckFailure(AssertionError):
    """A course check that failed; the message is written for the learner."""


def _short(value: Any, limit: int = 160) -> str:
    """A compact, readable rendering of a value (tensors show shape and dtype first)."""
    if isinstance(value, torch.Tensor):
        head = f"tensor(shape={tuple(value.shape)}, dtype={str(value.dtype).replace('torch.', '')}"
        if value.device.type != "cpu":
            head += f", device={value.device}"
        if value.numel() <= 8:
            body = np.array2string(value.detach().cpu().numpy(), precision=6, separator=", ")
            text = f"{head}, values={body})"
        else:
            flat = value.detach().flatten()[:4].cpu().numpy()
            text = f"{head}, first values={np.array2string(flat, precision=6, separator=', ')}...)"
    elif isinstance(value, np.ndarray):
        text = f"array(shape={value.shape}, dtype={value.dtype}, values={np.array2string(value, threshold=8)})"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(what: str, problem: str, expected: Any = None, got: Any = None, hint: str | None = None,
          show_values: bool = True) -> None:
    __tracebackhide__ = True  # IPython and pytest skip this frame: the learner sees the message, not our internals
    lines = [f"{what}: {problem}"]
    if show_values:
        for label, value in (("expected", expected), ("got", got)):
            text = value if isinstance(value, str) else _short(value)
            lines.append(f"    {label + ':':<9} " + text.replace("\n", "\n" + " " * 14))
    if hint:
        lines.append(f"Hint: {hint}")
    raise CheckFailure("\n".join(lines))


def check(condition: bool, what: str, *, expected: Any = None, got: Any = None,
          hint: str | None = None, problem: str = "check failed") -> None:
    """Fail with a learner-facing message unless ``condition`` holds.

    ``expected`` and ``got`` are shown when given (as text or values).
    """
    __tracebackhide__ = True
    if not condition:
        _fail(what, problem, expected, got, hint, show_values=expected is not None or got is not None)


def check_type(value: Any, types: type | tuple[type, ...], what: str, hint: str | None = None) -> None:
    """``value`` must be an instance of ``types``."""
    __tracebackhide__ = True
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        _fail(what, "wrong type", names, f"{type(value).__name__}: {_short(value, 80)}", hint)


def check_shape(value: Any, shape: Sequence[int], what: str, hint: str | None = None) -> None:
    """``value`` (tensor or array) must have exactly ``shape``."""
    __tracebackhide__ = True
    if not hasattr(value, "shape"):
        _fail(what, "expected a tensor or array", f"something with shape {tuple(shape)}",
              f"{type(value).__name__}", hint)
    if tuple(value.shape) != tuple(shape):
        _fail(what, "wrong shape", tuple(shape), tuple(value.shape), hint)


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=float)


def check_close(got: Any, expected: Any, what: str, *, rtol: float = 1e-5, atol: float = 1e-8,
                hint: str | None = None) -> None:
    """Numbers, arrays or tensors must agree within ``rtol``/``atol`` (and have the same shape)."""
    __tracebackhide__ = True
    if isinstance(got, torch.Tensor | np.ndarray) or isinstance(expected, torch.Tensor | np.ndarray):
        try:
            g, e = _as_array(got), _as_array(expected)
        except (TypeError, ValueError):
            _fail(what, "not a number or array", _short(expected), f"{type(got).__name__}", hint)
        if g.shape != e.shape:
            _fail(what, "wrong shape", e.shape, g.shape, hint)
        if g.size and not np.all(np.isfinite(g) == np.isfinite(e)):
            _fail(what, "NaN or inf where a finite number was expected (or the other way round)",
                  expected, got, hint)
        bad = ~np.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f" (first difference at index {idx}: expected {e[idx]:.6g}, got {g[idx]:.6g})" if idx else ""
            _fail(what, f"values differ in {int(bad.sum())} of {bad.size} places{where}", expected, got, hint)
        return
    if isinstance(got, bool) or not isinstance(got, int | float | np.floating | np.integer):
        _fail(what, "expected a number", _short(expected), f"{type(got).__name__}: {_short(got, 80)}", hint)
    g, e = float(got), float(expected)
    if math.isnan(e) and math.isnan(g):
        return
    if not math.isclose(g, e, rel_tol=rtol, abs_tol=atol):
        _fail(what, "wrong value", e, g, hint)


def check_equal(got: Any, expected: Any, what: str, hint: str | None = None) -> None:
    """``got == expected`` exactly (tensors compared element-wise)."""
    __tracebackhide__ = True
    if isinstance(got, torch.Tensor) or isinstance(expected, torch.Tensor):
        ok = isinstance(got, torch.Tensor) and isinstance(expected, torch.Tensor) and torch.equal(
            got.cpu(), expected.cpu())
    else:
        ok = got == expected
        if not isinstance(ok, bool):
            ok = bool(np.all(ok))
    if not ok:
        _fail(what, "wrong value", expected, got, hint)


def check_raises(fn: Callable[[], Any], exc: type[BaseException], what: str, hint: str | None = None) -> None:
    """Calling ``fn()`` must raise ``exc``."""
    __tracebackhide__ = True
    try:
        fn()
    except exc:
        return
    except Exception as err:  # noqa: BLE001 - any other error is the learner's to see
        _fail(what, "raised the wrong error", exc.__name__, f"{type(err).__name__}: {err}", hint)
    _fail(what, "no error was raised", exc.__name__, "no error", hint)


def check_choice(answer: Any, options: Iterable[str], what: str) -> None:
    """A multiple-choice answer must be one of ``options`` (a letter such as ``"B"``)."""
    __tracebackhide__ = True
    opts = [str(o) for o in options]
    if answer is None:
        _fail(what, "no answer yet", f"one of {opts}", "None",
              "set the variable to the letter of your choice, e.g. \"B\"")
    if not isinstance(answer, str) or answer.strip().upper() not in opts:
        _fail(what, "not one of the options", f"one of {opts}", answer,
              "answer with a single letter as a string, e.g. \"B\"")


def passed(what: str) -> None:
    """Print the line a learner looks for when the visible tests of an exercise pass."""
    print(f"\u2714 {what}: the visible tests pass.")
