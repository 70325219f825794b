"""Learner-facing checks: assertions that say what was expected, what came back, and a hint.

Test cells of the course call these instead of bare ``assert``. A failure raises :class:`CheckFailure`
(an ``AssertionError``, so nbgrader counts it as a failed test) whose message reads::

    linear_warmup at step 0: wrong value
        expected: 1e-05
        got:      0.0
    Hint: the first step already trains, so its LR must be above 0.

Passing cells end with :func:`passed`, which prints one line the learner can look for.

Three more things every exercise gets from here:

* **Own work.** :func:`own_work` wraps the learner's function for a test cell; while it runs, a profile hook
  watches every Python frame (and every call of a C function), and a call into the parts of ``lrlab`` that
  the exercise forbids, by any route, fails the cell with :class:`ShortcutUsed` ("write it yourself").
* **stderr never decides.** nbgrader scores a test cell with any stderr output 0. :func:`own_work` sends what
  the learner's code writes to stderr (warnings, a plain tqdm bar, ``print(..., file=sys.stderr)``) to stdout,
  and :func:`lrlab.setup` shows warnings on stdout. :func:`stderr_note` tells grading tools when a cell lost
  its points only to stderr.
* **Forgiving readings.** Multiple-choice answers are parsed with :func:`parse_choice` (case, spaces,
  ``"b."``, ``"(B)"``); :func:`check_close` accepts float32 arithmetic (relative 1e-6) and prints the digits
  that matter; gradients reset to ``None`` or to zeros are read alike by :func:`grad_or_zeros`.

imports: nothing from lrlab (numpy and torch only).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import math
import os
import re
import sys
import threading
import types
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


# The relative error that arithmetic in each floating dtype is entitled to: an answer computed in float32
# where the text fixes no dtype is right when it is right to float32's precision.
_DTYPE_RTOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2,
               np.dtype(np.float32): 1e-6, np.dtype(np.float16): 2e-3}


def dtype_rtol(*values: Any) -> float:
    """The relative tolerance the lowest-precision float among ``values`` is entitled to (0.0 for float64)."""
    rtol = 0.0
    for value in values:
        dtype = getattr(value, "dtype", None)
        if dtype is not None:
            if not isinstance(dtype, torch.dtype):
                dtype = np.dtype(dtype)
            rtol = max(rtol, _DTYPE_RTOL.get(dtype, 0.0))
    return rtol


def _digits(expected: float, got: float, rtol: float) -> tuple[str, str]:
    """``expected`` and ``got`` rendered with the significant digits the tolerance needs (so they differ)."""
    digits = min(17, max(6, math.ceil(-math.log10(rtol)) + 2 if rtol > 0 else 17))
    while True:
        e, g = f"{expected:.{digits}g}", f"{got:.{digits}g}"
        if e != g or digits >= 17:
            return e, g
        digits += 1


def _recognised(got: Any, mistakes: Sequence[tuple[Any, str]] | None, rtol: float, atol: float) -> str | None:
    """The hint of the first known mistake whose value ``got`` matches, if any."""
    for wrong, hint in mistakes or ():
        try:
            g, w = _as_array(got), _as_array(wrong)
        except (TypeError, ValueError):
            continue
        if g.shape == w.shape and bool(np.all(np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True))):
            return hint
    return None


def check_close(got: Any, expected: Any, what: str, *, rtol: float = 1e-5, atol: float = 1e-8,
                hint: str | None = None, mistakes: Sequence[tuple[Any, str]] | None = None) -> None:
    """Numbers, arrays or tensors must agree within ``rtol``/``atol`` (and have the same shape).

    A float32 (or half-precision) value gets at least the relative tolerance of its dtype (:func:`dtype_rtol`).
    ``mistakes`` lists ``(value_a_known_mistake_gives, hint)``: when ``got`` matches one of them, the failure
    names that mistake instead of the general ``hint``.
    """
    __tracebackhide__ = True
    rtol = max(rtol, dtype_rtol(got, expected))
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
            ev, gv = _digits(float(e[idx]), float(g[idx]), rtol)
            where = f" (first difference at index {idx}: expected {ev}, got {gv})" if idx else ""
            _fail(what, f"values differ in {int(bad.sum())} of {bad.size} places{where}", expected, got,
                  _recognised(got, mistakes, rtol, atol) or hint)
        return
    if isinstance(got, bool) or not isinstance(got, int | float | np.floating | np.integer):
        _fail(what, "expected a number", _short(expected), f"{type(got).__name__}: {_short(got, 80)}", hint)
    g, e = float(got), float(expected)
    if math.isnan(e) and math.isnan(g):
        return
    if not math.isclose(g, e, rel_tol=rtol, abs_tol=atol):
        ev, gv = _digits(e, g, rtol)
        _fail(what, "wrong value", ev, gv, _recognised(got, mistakes, rtol, atol) or hint)


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
    """Calling ``fn()`` must raise ``exc`` (a shortcut found while it runs is reported as such)."""
    __tracebackhide__ = True
    try:
        fn()
    except ShortcutUsed:
        raise
    except exc:
        return
    except Exception as err:  # noqa: BLE001 - any other error is the learner's to see
        _fail(what, "raised the wrong error", exc.__name__, f"{type(err).__name__}: {err}", hint)
    _fail(what, "no error was raised", exc.__name__, "no error", hint)


_CHOICE = re.compile(r"[A-Za-z]+")
_CHOICE_FILLERS = {"ANSWER", "OPTION", "CHOICE", "IS", "THE", "MY"}


def parse_choice(answer: Any, options: Iterable[str]) -> str | None:
    """The option letter a multiple-choice answer names, or None when it names none or several.

    Forgiving about how the letter is written: case, spaces and punctuation (``" b "``, ``"b."``, ``"(B)"``,
    ``"B)"``, ``"Option B"``, ``"answer: b"``), and a letter followed by the option's text (``"B. The test rows
    ..."``). Not a string, no letter, or two different letters (``"B or C"``) give None.
    """
    opts = {str(o).strip().upper() for o in options}
    if not isinstance(answer, str):
        return None
    words = [w.upper() for w in _CHOICE.findall(answer)]
    while words and words[0] in _CHOICE_FILLERS:
        words = words[1:]
    if not words or len(words[0]) != 1 or words[0] not in opts:
        return None
    letters = {w for w in words if len(w) == 1 and w in opts and w != "A"} | {words[0]}
    if len(letters) > 1:  # "B or C" names two options ("a" alone is also an English word, so it does not count)
        return None
    return words[0]


def check_choice(answer: Any, options: Iterable[str], what: str) -> str:
    """A multiple-choice answer must name one of ``options`` (a letter such as ``"B"``); returns that letter."""
    __tracebackhide__ = True
    opts = [str(o) for o in options]
    if answer is None:
        _fail(what, "no answer yet", f"one of {opts}", "None",
              "set the variable to the letter of your choice, e.g. \"B\"")
    letter = parse_choice(answer, opts)
    if letter is None:
        _fail(what, "not one of the options", f"one of {opts}", answer,
              "answer with a single letter as a string, e.g. \"B\"")
    return letter


def check_answer(answer: Any, correct: str, options: Iterable[str], what: str, hint: str | None = None) -> None:
    """A multiple-choice answer must be ``correct`` (read with :func:`parse_choice`; the right letter is not shown).

    A question with several parts gives one test cell (and its points) per part.
    """
    __tracebackhide__ = True
    letter = check_choice(answer, options, what)
    if letter != str(correct).strip().upper():
        _fail(what, "not the right answer", got=letter, hint=hint or "read the question and the options again",
              show_values=False)


def _rng_states() -> tuple:
    import random

    return torch.get_rng_state(), np.random.get_state(), random.getstate()


@contextlib.contextmanager
def untouched_rng(what: str, hint: str | None = None):
    """The block must leave the global random generators (PyTorch's CPU one, NumPy's, Python's) as they were.

    For exercises whose text says to draw from a generator of their own: reseeding or drawing from the
    global one changes what every other piece of code gets. Each global generator first draws one number,
    so that reseeding it with the seed it last had is noticed too.
    """
    __tracebackhide__ = True
    import random

    torch.rand(1), np.random.random(), random.random()
    torch_state, np_state, py_state = _rng_states()
    yield
    now = _rng_states()
    changed = [name for name, same in (
        ("PyTorch's", torch.equal(now[0], torch_state)),
        ("NumPy's", now[1][0] == np_state[0] and np.array_equal(now[1][1], np_state[1]) and now[1][2:] == np_state[2:]),
        ("Python's", now[2] == py_state)) if not same]
    if changed:
        _fail(what, f"changed {' and '.join(changed)} global random generator", "the global generators untouched",
              f"{' and '.join(changed)} reseeded or drawn from",
              hint or "draw from a generator of your own, e.g. torch.Generator().manual_seed(seed)")


def grad_or_zeros(param: torch.Tensor) -> torch.Tensor:
    """``param.grad``, or zeros of its shape when the gradient was reset to None (what ``zero_grad()`` does).

    Where an exercise says "reset the gradient", None and a zeroed tensor are the same answer.
    """
    if param.grad is None:
        return torch.zeros_like(param)
    return param.grad


def passed(what: str) -> None:
    """Print the line a learner looks for when the visible tests of an exercise pass."""
    _CELL["passed"] = True
    print(f"\u2714 {what}: the visible tests pass.")


# --- a test cell that passed but wrote to stderr says so -------------------------------------------------------

_CELL = {"passed": False, "stderr": 0}


class _CountingStderr:
    """sys.stderr as it was, counting what Python code writes to it during the current cell."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        _CELL["stderr"] += len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _before_cell(*_: Any) -> None:
    _CELL.update(passed=False, stderr=0)


def _after_cell(*_: Any) -> None:
    if _CELL["passed"] and _CELL["stderr"]:
        print("Note: every check of this cell passed, but something in it wrote to stderr, and the autograder "
              "scores a test cell with stderr output 0. Look for code that writes to stderr outside your functions.")
    _CELL.update(passed=False, stderr=0)


def note_stderr_in_cells() -> bool:
    """In IPython, make a test cell that passed (:func:`passed`) but wrote to stderr say so at its end.

    :func:`lrlab.setup` calls this. Outside IPython (a script, pytest) it does nothing and returns False.
    Only what Python code writes to ``sys.stderr`` is counted; :func:`stderr_note` reads a graded cell's
    outputs instead, stderr from C code included.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "events"):
        return False
    if not isinstance(sys.stderr, _CountingStderr):
        sys.stderr = _CountingStderr(sys.stderr)
    for event, callback in (("pre_run_cell", _before_cell), ("post_run_cell", _after_cell)):
        if callback not in shell.events.callbacks[event]:
            shell.events.register(event, callback)
    return True


# --- own work: no shortcuts into lrlab --------------------------------------------------------------------------

class ShortcutUsed(CheckFailure):
    """The learner's code called a part of ``lrlab`` that the exercise asks them to write themselves."""


_MIN_SIGNATURE_BYTES = 24  # shorter bodies are too common to say that one was copied from the other


def _shape(code: types.CodeType) -> tuple | None:
    """A cheap first look at a function body (its names and variables): only equal shapes are compared further."""
    if len(code.co_code) < _MIN_SIGNATURE_BYTES:
        return None
    return code.co_names, code.co_varnames, code.co_argcount, code.co_kwonlyargcount


_SAME_OP = {"LOAD_METHOD": "LOAD_ATTR"}  # 3.11 compiles `module.f()` either way, depending on the imports around it
# 3.13 places (or leaves out) the NULL that a call pushes depending on the code around the function as well
_NO_MEANING = ("CACHE", "NOP", "EXTENDED_ARG", "PUSH_NULL")


def _signature(code: types.CodeType) -> tuple:
    """What a copy of a function's source compiles to again, wherever it is pasted (instructions and operands)."""
    import dis

    ops = []
    for ins in dis.get_instructions(code):
        if ins.opname in _NO_MEANING:
            continue
        arg = None if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs else ins.argval
        try:
            hash(arg)
        except TypeError:
            arg = repr(arg)
        ops.append((_SAME_OP.get(ins.opname, ins.opname), arg))
    return tuple(ops)


def _functions_of(obj: Any) -> list[types.FunctionType]:
    """The Python functions behind a function, method, partial or class (its own methods and properties)."""
    obj = inspect.unwrap(obj) if callable(obj) else obj
    if isinstance(obj, functools.partial):
        return _functions_of(obj.func)
    if isinstance(obj, types.MethodType):
        return _functions_of(obj.__func__)
    if isinstance(obj, types.FunctionType):
        return [obj]
    if isinstance(obj, type):
        found = []
        for attr in vars(obj).values():
            if isinstance(attr, staticmethod | classmethod):
                attr = attr.__func__
            if isinstance(attr, property):
                found += [f for f in (attr.fget, attr.fset, attr.fdel) if isinstance(f, types.FunctionType)]
            elif isinstance(attr, types.FunctionType):
                found.append(inspect.unwrap(attr))
        return found
    return []


class Forbidden:
    """What one exercise must not call: whole modules (by name) and single functions or classes.

    ``forbid`` holds module names (``"lrlab.data"``: every function defined in that module or a submodule),
    dotted names of functions or classes (``"lrlab.training.evaluate"``: that function, or every method of
    that class), or the objects themselves (a C function such as ``torch.cdist`` is caught when called).
    ``allow`` names pieces inside a forbidden module that the exercise itself provides (a model, a loader):
    they run freely, together with everything they call.
    """

    def __init__(self, forbid: Iterable[Any], allow: Iterable[Any] = ()) -> None:
        if isinstance(forbid, str):
            forbid = (forbid,)
        self.modules: tuple[str, ...] = ()
        self.files: set[str] = set()
        self.codes: dict[types.CodeType, str] = {}
        self.places: dict[tuple, str] = {}
        self.shapes: set[tuple] = set()
        self.signatures: dict[tuple, str] = {}
        self.builtins: dict[int, str] = {}
        self._builtin_objects: list[Any] = []  # keeps the ids above valid
        for entry in forbid:
            self._add(entry)
        if not (self.modules or self.codes or self.builtins):
            raise ValueError("forbid must name at least one module, function or class (e.g. 'lrlab.data')")
        self.allowed: set[types.CodeType] = set()
        for entry in ((allow,) if isinstance(allow, str) else allow):
            obj, _ = self._resolve(entry)
            functions = _functions_of(obj)
            if not functions:
                raise ValueError(f"allow must name Python functions or classes, got {entry!r}")
            self.allowed.update(f.__code__ for f in functions)

    @staticmethod
    def _resolve(entry: Any) -> tuple[Any, str]:
        if not isinstance(entry, str):
            name = getattr(entry, "__qualname__", getattr(entry, "__name__", repr(entry)))
            module = getattr(entry, "__module__", None)
            return entry, f"{module}.{name}" if module else name
        try:
            return importlib.import_module(entry), entry
        except ImportError:
            pass
        head, _, attr = entry.rpartition(".")
        try:
            return getattr(importlib.import_module(head), attr), entry
        except (ImportError, AttributeError, ValueError):
            raise ValueError(
                f"cannot find {entry!r} to forbid: give a module ('lrlab.data'), a function or class "
                "('lrlab.data.train_test_split') or the object itself") from None

    def _add(self, entry: Any) -> None:
        obj, name = self._resolve(entry)
        if isinstance(obj, types.ModuleType):
            self.modules += (obj.__name__,)
            if getattr(obj, "__file__", None):
                self.files.add(os.path.abspath(obj.__file__))
            return
        functions = _functions_of(obj)
        for fn in functions:
            code = fn.__code__
            # a class is named by itself when it is built or called, by its method otherwise
            is_method = isinstance(obj, type) and fn.__name__ not in ("__init__", "__new__", "__call__", "forward")
            label = f"{name}.{fn.__name__}" if is_method else name
            self.codes[code] = label
            if code.co_filename.startswith("<"):
                # generated code (a dataclass's __init__, __repr__, __eq__ ...): every dataclass's has the same
                # file, line and name, and often the same shape, so only this very code object identifies it
                continue
            self.places[(code.co_filename, code.co_firstlineno, code.co_qualname)] = label
            shape = _shape(code)
            if shape is not None:
                self.shapes.add(shape)
                self.signatures[_signature(code)] = label
        if not functions:
            if not callable(obj):
                raise ValueError(f"{entry!r} is neither a module nor something that can be called")
            self.builtins[id(obj)] = name
            self._builtin_objects.append(obj)

    def _module_of(self, frame: types.FrameType) -> str | None:
        module = frame.f_globals.get("__name__")
        if isinstance(module, str):
            for name in self.modules:
                if module == name or module.startswith(name + "."):
                    return module
        return None

    def match(self, frame: types.FrameType) -> str | None:
        """The forbidden name a Python frame runs, or None (never for this module: the checks themselves)."""
        code = frame.f_code
        if code.co_filename == __file__:
            return None
        hit = self.codes.get(code) or self.places.get((code.co_filename, code.co_firstlineno, code.co_qualname))
        if hit:
            return hit
        if self.shapes and _shape(code) in self.shapes:
            hit = self.signatures.get(_signature(code))
            if hit:
                return hit
        module = self._module_of(frame)
        if module is None and self.files and os.path.abspath(code.co_filename) in self.files:
            module = os.path.splitext(os.path.basename(code.co_filename))[0]
        if module is not None:
            qualname = code.co_qualname
            owner = frame.f_locals.get("self") if "<locals>" in qualname else None
            if owner is not None:  # generated code, e.g. "__create_fn__.<locals>.__init__": name the class instead
                qualname = f"{type(owner).__qualname__}.{code.co_name}"
            return f"{module}.{qualname}"
        return None


_SWITCHES = {id(sys.setprofile)}  # threading.setprofile only reaches threads started later


class _Watch:
    """A profile hook that records the first forbidden call while it is installed (on this and new threads)."""

    def __init__(self, rule: Forbidden) -> None:
        self.rule = rule
        self.hit: str | None = None
        self.tampered: str | None = None
        self._verdicts: dict[types.CodeType, str | None] = {}
        self._allowed_depth = 0
        self._previous: Any = None
        self._previous_threads: Any = None

    def __call__(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            if code in self.rule.allowed:
                self._allowed_depth += 1
            elif self._allowed_depth == 0 and self.hit is None:
                if code in self._verdicts:
                    verdict = self._verdicts[code]
                else:
                    verdict = self._verdicts[code] = self.rule.match(frame)
                if verdict is not None:
                    self.hit = verdict
        elif event == "return":
            if self._allowed_depth and frame.f_code in self.rule.allowed:
                self._allowed_depth -= 1
        elif event == "c_call":
            if id(arg) in _SWITCHES and frame.f_code not in _OWN_SWITCHING:
                self.tampered = self.tampered or getattr(arg, "__qualname__", "setprofile")
            elif self._allowed_depth == 0 and self.hit is None and id(arg) in self.rule.builtins:
                self.hit = self.rule.builtins[id(arg)]
        if self._previous is not None and callable(self._previous):
            self._previous(frame, event, arg)

    def __enter__(self) -> _Watch:
        self._previous, self._previous_threads = sys.getprofile(), threading.getprofile()
        threading.setprofile(self)
        sys.setprofile(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        threading.setprofile(self._previous_threads)
        sys.setprofile(self._previous)


# a guard inside another one switches profilers on and off itself: that is no tampering
_OWN_SWITCHING = {_Watch.__enter__.__code__, _Watch.__exit__.__code__}


@contextlib.contextmanager
def stderr_to_stdout():
    """Send what is written to stderr (by Python or by C code) to stdout while the block runs.

    nbgrader scores a test cell with any stderr output 0; an honest warning or progress bar must not do that.
    """
    previous = sys.stderr
    with contextlib.redirect_stderr(sys.stdout):
        saved = None
        try:
            for stream in (sys.stdout, previous):
                stream.flush()
            saved = os.dup(2)
            os.dup2(1, 2)
        except (OSError, ValueError, AttributeError):  # no file descriptors here: Python-level writes only
            saved = None
        try:
            yield
        finally:
            if saved is not None:
                try:
                    sys.stdout.flush()
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)


def _shortcut_message(name: str, hit: str) -> str:
    return (f"{name}: calls {hit}\n"
            f"This exercise is about writing it yourself: write {name} without {hit}. "
            "While your code calls it, by any route, the exercise scores 0.")


def own_work(fn: Any, name: str, forbid: Iterable[Any], *, allow: Iterable[Any] = ()) -> Callable[..., Any]:
    """``fn`` (the learner's function, model, ...) wrapped for a test cell: the same call, with two differences.

    While it runs, any call into what ``forbid`` names (see :class:`Forbidden`), by whatever route
    (an import alias, ``importlib``, a helper, ``functools.partial``, a lambda, ``map``, copied code), makes
    the call raise :class:`ShortcutUsed`, whose message tells the learner to write ``name`` without it; and
    what it writes to stderr goes to stdout (:func:`stderr_to_stdout`). Switching the check off from
    inside (``sys.setprofile``) counts as a shortcut too.
    """
    __tracebackhide__ = True
    rule = forbid if isinstance(forbid, Forbidden) else Forbidden(forbid, allow)
    if not callable(fn):
        _fail(name, "not something that can be called", "a function", f"{type(fn).__name__}: {_short(fn, 80)}",
              f"define {name} with `def` in the answer cell and run that cell")

    def guarded(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        watch = _Watch(rule)
        error: BaseException | None = None
        result = None
        with stderr_to_stdout():
            with watch:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - re-raised below unless a shortcut explains it
                    error = exc
        if watch.tampered:
            raise ShortcutUsed(f"{name}: calls {watch.tampered}, which switches off the check that your code is "
                               "your own; take that call out")
        if watch.hit:
            raise ShortcutUsed(_shortcut_message(name, watch.hit)) from None
        if error is not None:
            raise error
        return result

    guarded.__name__ = name
    guarded.__qualname__ = name
    guarded.__doc__ = getattr(fn, "__doc__", None)
    guarded.__wrapped_learner__ = fn  # type: ignore[attr-defined]
    return guarded


def stderr_note(outputs: Iterable[Any]) -> str | None:
    """For grading tools: the note to add to a test cell that lost its points only to stderr output.

    ``outputs`` are the cell's nbformat outputs. nbgrader gives a test cell with any stderr stream 0 points
    even when no check failed; when that is what happened (stderr, no error), this says so, and what wrote
    it. Otherwise None.
    """
    outputs = list(outputs)

    def kind(out: Any) -> str:
        return out.get("output_type", "") if isinstance(out, dict) else getattr(out, "output_type", "")

    def field(out: Any, key: str) -> Any:
        return out.get(key) if isinstance(out, dict) else getattr(out, key, None)

    if any(kind(o) == "error" for o in outputs):
        return None
    streams = [o for o in outputs if kind(o) == "stream" and field(o, "name") == "stderr"]
    if not streams:
        return None
    text = "".join("".join(t) if isinstance(t := field(o, "text"), list) else str(t or "") for o in streams)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return ("Every check of this cell passed, but the cell wrote to stderr, and the autograder scores a test cell "
            "with stderr output 0. It began: " + repr(first[:200]) + ". A warning or a progress bar inside "
            "your function is fine when the test calls it (lrlab sends those to stdout); look for code that "
            "writes to stderr outside your functions.")
