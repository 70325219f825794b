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


def test_check_close_gives_float32_its_precision_and_prints_the_digits_that_differ():
    want = 0.007499340123
    got32 = torch.tensor(want * (1 + 3e-8), dtype=torch.float32)  # float32 arithmetic, right to 1e-7
    checks.check_close(got32, torch.tensor(want, dtype=torch.float64), "lr", rtol=1e-9)
    checks.check_close(np.float32(want), want, "lr", rtol=1e-9)
    assert "wrong value" in message(checks.check_close, want * (1 + 3e-8), want, "lr", rtol=1e-9, atol=0)
    text = message(checks.check_close, 0.00749934012, 0.00749934, "lr", rtol=1e-9, atol=0)
    expected_line = next(line for line in text.splitlines() if "expected:" in line)
    got_line = next(line for line in text.splitlines() if "got:" in line)
    assert expected_line.split(":")[1].strip() != got_line.split(":")[1].strip(), text
    assert checks.dtype_rtol(torch.zeros(1, dtype=torch.float16), 1.0) == 2e-3
    assert checks.dtype_rtol(torch.zeros(1, dtype=torch.float64)) == 0.0


def test_check_close_names_a_recognised_mistake_and_stays_general_otherwise():
    mistakes = [(2.0, "you divided by n - 1 twice"), (torch.tensor([1.0, 1.0]), "std, not variance")]
    assert "divided by n - 1 twice" in message(checks.check_close, 2.0, 1.0, "x", hint="general", mistakes=mistakes)
    assert "Hint: general" in message(checks.check_close, 3.0, 1.0, "x", hint="general", mistakes=mistakes)
    text = message(checks.check_close, torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0]), "v", hint="general",
                   mistakes=mistakes)
    assert "std, not variance" in text


@pytest.mark.parametrize("answer", ["B", "b", " b ", "b.", "(B)", "B)", "'B'", "Option B", "answer: b",
                                    "B. The test rows help set the mean", "[b]"])
def test_parse_choice_is_forgiving_about_how_the_letter_is_written(answer):
    assert checks.parse_choice(answer, "ABCD") == "B"
    checks.check_answer(answer, "B", "ABCD", "Q")


@pytest.mark.parametrize("answer", ["", "E", "B or C", "BC", "bee", 2, None, ["B"], "..."])
def test_parse_choice_rejects_no_letter_or_several(answer):
    assert checks.parse_choice(answer, "ABCD") is None


def test_check_answer_does_not_show_the_right_letter():
    text = message(checks.check_answer, "c.", "B", "ABCD", "ANSWER")
    assert "not the right answer" in text and "B" not in text.replace("ANSWER", "")
    assert "not one of the options" in message(checks.check_answer, "B or C", "B", "ABCD", "ANSWER")


def test_grad_or_zeros_reads_none_and_zeroed_gradients_alike():
    p = torch.ones(3, requires_grad=True)
    assert torch.equal(checks.grad_or_zeros(p), torch.zeros(3))
    p.grad = torch.full((3,), 2.0)
    assert torch.equal(checks.grad_or_zeros(p), torch.full((3,), 2.0))


def test_stderr_note_only_for_a_cell_that_lost_its_points_to_stderr():
    ok = {"output_type": "stream", "name": "stdout", "text": "fine\n"}
    err = {"output_type": "stream", "name": "stderr", "text": ["  \n", "UserWarning: careful\n"]}
    boom = {"output_type": "error", "ename": "CheckFailure", "evalue": "x", "traceback": []}
    assert checks.stderr_note([ok]) is None
    assert checks.stderr_note([err, boom]) is None
    note = checks.stderr_note([ok, err])
    assert "stderr" in note and "UserWarning: careful" in note


def test_setup_shows_warnings_on_stdout(capsys):
    import warnings

    import lrlab

    saved = warnings.showwarning
    try:
        lrlab.setup(0, "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lrlab.device._show_warning_on_stdout  # pytest's recorder replaced it
            warnings.warn("an honest warning", UserWarning, stacklevel=1)
        out = capsys.readouterr()
        assert "an honest warning" in out.out and out.err == ""
    finally:
        warnings.showwarning = saved


# --- own work: the shortcut guard ---------------------------------------------------------------------------------

import functools  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import types  # noqa: E402

import lrlab.data  # noqa: E402
import lrlab.models  # noqa: E402
import lrlab.training  # noqa: E402

X10, Y10 = torch.arange(20.0).reshape(10, 2), (torch.arange(10) % 2).float()


def honest_split(X, y, n_train, seed):
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    return X[order[:n_train]], X[order[n_train:]], y[order[:n_train]], y[order[n_train:]]


def shortcut_message(fn, forbid=("lrlab.data",), name="split_data") -> str:
    with pytest.raises(checks.ShortcutUsed) as info:
        checks.own_work(fn, name, forbid)(X10, Y10, 7, 0)
    return str(info.value)


def _helper(X, y, n, seed):
    return lrlab.data.train_test_split(X, y, n_train=n, seed=seed)


def _exec_defined():
    ns = {}
    exec("import lrlab.data as d\ndef f(X, y, n, seed):\n    return d.train_test_split(X, y, n_train=n, seed=seed)", ns)
    return ns["f"]


def _copied_code():
    src = lrlab.data.train_test_split
    fn = types.FunctionType(src.__code__, dict(src.__globals__), "mine", src.__defaults__, src.__closure__)
    fn.__kwdefaults__ = src.__kwdefaults__
    return fn


def _replaced_code():
    src = lrlab.data.train_test_split
    code = src.__code__.replace(co_name="mine", co_filename="<my cell>")
    fn = types.FunctionType(code, {**src.__globals__, "__name__": "__main__"}, "mine", src.__defaults__)
    fn.__kwdefaults__ = src.__kwdefaults__
    return fn


def _recompiled_source():
    ns = dict(lrlab.data.__dict__)
    ns["__name__"] = "__main__"
    exec(compile(inspect.getsource(lrlab.data.train_test_split), "<cell 7>", "exec"), ns)  # a pasted copy
    return ns["train_test_split"]


def _in_a_thread(X, y, n, seed):
    box = []
    t = threading.Thread(target=lambda: box.append(lrlab.data.train_test_split(X, y, n_train=n, seed=seed)))
    t.start()
    t.join()
    return box[0]


def _switch_off(X, y, n, seed):
    hook = sys.getprofile()
    sys.setprofile(None)
    out = lrlab.data.train_test_split(X, y, n_train=n, seed=seed)
    sys.setprofile(hook)
    return out


ROUTES = {
    "the function itself": lambda: lrlab.data.train_test_split,
    "import alias": lambda: (lambda X, y, n, s: __import__("lrlab.data").data.train_test_split(X, y, n, s)),
    "from-import": lambda: _helper,
    "importlib": lambda: (lambda X, y, n, s: importlib.import_module("lrlab.data").train_test_split(X, y, n, s)),
    "functools.partial": lambda: functools.partial(lrlab.data.train_test_split),
    "the module's namespace by name": lambda: (lambda *a: vars(sys.modules["lrlab.data"])["train_test_split"](*a)),
    "through map (a C builtin)": lambda: (lambda *a: list(map(lambda t: lrlab.data.train_test_split(*t), [a]))[0]),
    "exec'd code": _exec_defined,
    "eval'd call": lambda: (lambda X, y, n, s: eval("lrlab.data.train_test_split(X, y, n, s)")),
    "copied __code__": _copied_code,
    "__code__.replace": _replaced_code,
    "pasted source compiled again": _recompiled_source,
    "another thread": lambda: _in_a_thread,
    "Standardizer, a class": lambda: (lambda X, y, n, s: (lrlab.data.Standardizer().fit_transform(X),) * 4),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_own_work_catches_a_shortcut_by_any_route(route):
    text = shortcut_message(ROUTES[route]())
    assert "split_data: calls lrlab.data." in text
    assert "write split_data without lrlab.data." in text and "scores 0" in text


def test_own_work_catches_switching_the_check_off():
    assert "switches off the check" in shortcut_message(_switch_off)
    assert sys.getprofile() is None


def test_own_work_lets_honest_code_torch_and_the_test_itself_call_anything():
    got = checks.own_work(honest_split, "split_data", ["lrlab.data"])(X10, Y10, 7, 0)
    assert [t.shape[0] for t in got] == [7, 3, 7, 3]
    lrlab.data.train_test_split(X10, Y10, n_train=7, seed=0)  # the test itself, outside the call: allowed
    assert sys.getprofile() is None and threading.getprofile() is None


def test_own_work_forbids_per_exercise_and_allows_what_the_exercise_provides():
    def step(model, xb, yb):
        return nn_loss(model(xb), yb).item()

    nn_loss = torch.nn.BCEWithLogitsLoss()
    model = lrlab.models.MLP(2, hidden=4, seed=0)  # an lrlab model the test passes in
    checks.own_work(step, "train_step", ["lrlab.training"])(model, X10, Y10)
    with pytest.raises(checks.ShortcutUsed, match="lrlab.models.MLP"):
        checks.own_work(step, "train_step", ["lrlab.models"])(model, X10, Y10)
    checks.own_work(step, "train_step", ["lrlab.models"], allow=[lrlab.models.MLP])(model, X10, Y10)

    def evaluate(model, loader):
        return lrlab.training.evaluate(model, loader, device="cpu")

    with pytest.raises(checks.ShortcutUsed, match="write evaluate_model without lrlab.training.evaluate"):
        checks.own_work(evaluate, "evaluate_model", ["lrlab.training.evaluate"])(model, [(X10, Y10)])


def test_own_work_catches_a_forbidden_class_and_its_subclass():
    class Mine(lrlab.models.MLP):
        pass

    for make in (lambda f, h: lrlab.models.MLP(f, hidden=h), lambda f, h: Mine(f, hidden=h)):
        with pytest.raises(checks.ShortcutUsed, match="lrlab.models.MLP"):
            checks.own_work(make, "build_model", ["lrlab.models.MLP"])(3, 4)


def test_own_work_forbids_a_c_function_by_object():
    def dist(A, B):
        return torch.cdist(A, B) ** 2

    with pytest.raises(checks.ShortcutUsed, match="cdist"):
        checks.own_work(dist, "pairwise_sq_dist", [torch.cdist])(X10, X10)
    with pytest.raises(checks.ShortcutUsed, match="allclose"):
        checks.own_work(lambda a: torch.allclose(a, a), "same", [torch.allclose])(X10)


def test_own_work_keeps_the_learners_errors_and_reports_shortcuts_before_them():
    def broken(X, y, n, seed):
        raise ValueError("n_train too large")

    guarded = checks.own_work(broken, "split_data", ["lrlab.data"])
    with pytest.raises(ValueError, match="too large"):
        guarded(X10, Y10, 10, 0)
    checks.check_raises(lambda: guarded(X10, Y10, 10, 0), ValueError, "n_train = all rows")
    lazy = checks.own_work(lrlab.data.train_test_split, "split_data", ["lrlab.data"])
    with pytest.raises(checks.ShortcutUsed):  # raises ValueError itself, but the shortcut is what counts
        checks.check_raises(lambda: lazy(X10, Y10, 10, 0), ValueError, "n_train = all rows")


def test_own_work_sends_stderr_warnings_and_progress_bars_to_stdout(capfd):
    import warnings

    from tqdm import tqdm

    def noisy(n):
        print("to stderr", file=sys.stderr)
        warnings.warn("honest warning", RuntimeWarning, stacklevel=1)
        return sum(1 for _ in tqdm(range(n), mininterval=0))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = warnings._showwarning_orig
        warnings._showwarnmsg_impl = lambda msg: sys.stderr.write(warnings._formatwarnmsg(msg))
        assert checks.own_work(noisy, "noisy", ["lrlab.data"])(5) == 5
        os_level = checks.own_work(lambda: __import__("os").write(2, b"from C\n"), "c_write", ["lrlab.data"])
        os_level()
    out = capfd.readouterr()
    assert out.err == "", out.err
    assert "to stderr" in out.out and "honest warning" in out.out and "5/5" in out.out and "from C" in out.out


def test_own_work_explains_a_missing_function_and_bad_rules():
    assert "not something that can be called" in message(checks.own_work, None, "split_data", ["lrlab.data"])
    with pytest.raises(ValueError, match="cannot find 'lrlab.nothing_here'"):
        checks.own_work(honest_split, "split_data", ["lrlab.nothing_here"])
    with pytest.raises(ValueError, match="at least one"):
        checks.own_work(honest_split, "split_data", [])


def test_own_work_nests_and_restores_an_outer_profiler():
    seen = []

    def outer_hook(frame, event, arg):
        seen.append(event)

    sys.setprofile(outer_hook)
    try:
        inner = checks.own_work(honest_split, "split_data", ["lrlab.data"])
        outer = checks.own_work(lambda: inner(X10, Y10, 7, 0), "fit", ["lrlab.training"])
        outer()
        assert sys.getprofile() is outer_hook
    finally:
        sys.setprofile(None)
    assert "call" in seen  # the outer profiler kept receiving events


@pytest.mark.parametrize("route", ["copied __code__", "__code__.replace", "pasted source compiled again"])
def test_own_work_recognises_copied_code_of_a_forbidden_function(route):
    text = shortcut_message(ROUTES[route](), forbid=("lrlab.data.train_test_split",))
    assert "write split_data without lrlab.data.train_test_split" in text


def test_untouched_rng_notices_reseeding_or_drawing_from_a_global_generator():
    import random

    with checks.untouched_rng("local"):
        torch.randperm(5, generator=torch.Generator().manual_seed(0))
        np.random.default_rng(0).permutation(5)
        random.Random(0).random()
    for act, name in ((lambda: torch.manual_seed(0), "PyTorch's"), (lambda: torch.rand(1), "PyTorch's"),
                      (lambda: np.random.seed(0), "NumPy's"), (lambda: random.random(), "Python's")):
        with pytest.raises(CheckFailure, match=f"changed {name} global random generator"):
            with checks.untouched_rng("split_data", hint="use torch.Generator"):
                act()


def test_own_work_never_counts_the_checks_themselves_even_when_all_of_lrlab_is_forbidden():
    def uses_checks(X, y, n, seed):
        checks.check_shape(X, X.shape, "X")  # a learner may use the course's checks in their own code
        return honest_split(X, y, n, seed)

    checks.own_work(uses_checks, "split_data", ["lrlab"])(X10, Y10, 7, 0)
    with pytest.raises(checks.ShortcutUsed, match="lrlab.data.train_test_split"):
        checks.own_work(ROUTES["from-import"](), "split_data", ["lrlab"])(X10, Y10, 7, 0)


def test_own_work_tells_dataclasses_apart_and_names_the_forbidden_one():
    import dataclasses

    import lrlab.schedules

    @dataclasses.dataclass
    class Point:   # the learner's own dataclass: its generated __init__ looks like every other dataclass's
        x: float
        lr: float

    def own(t):
        return Point(t, 0.1 * t).lr

    def course(t):
        return lrlab.schedules.Cosine(0.1, total=10)(t)

    for forbid in (["lrlab.schedules.Cosine", "lrlab.schedules.Constant"], ["lrlab.schedules"]):
        assert checks.own_work(own, "schedule", forbid)(2.0) == pytest.approx(0.2)
        with pytest.raises(checks.ShortcutUsed, match=r"without lrlab\.schedules\.Cosine") as caught:
            checks.own_work(course, "schedule", forbid)(2.0)
        assert "<locals>" not in str(caught.value)
