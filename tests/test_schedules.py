"""Unit tests of lrlab.schedules: values, conventions, composition, units, validation, the LambdaLR adapter."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import lrlab.schedules as S
from lrlab.schedules import (
    WSD,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    Join,
    Linear,
    MultiStep,
    OneCycle,
    Piecewise,
    Polynomial,
    StepDecay,
    Warmup,
)

# The course's Hypothesis profile (tests/conftest.py): a fixed seed in CI, random exploration locally.
PROPERTY = settings(settings.get_profile("lrlab"), max_examples=40)


# ------------------------------------------------------------------------------------------- values
def test_constant_step_multistep_exponential_values():
    assert Constant(0.3)(0) == Constant(0.3)(10**9) == 0.3
    s = StepDecay(1.0, step_size=10, gamma=0.5)
    assert [s(t) for t in (0, 9, 10, 19, 20, 35)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]
    m = MultiStep(1.0, [3, 7], gamma=0.1)
    assert [m(t) for t in (0, 2, 3, 6, 7, 100)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    e = Exponential(2.0, gamma=0.5)
    assert [e(t) for t in (0, 1, 3)] == [2.0, 1.0, 0.25]


def test_polynomial_and_linear_values_and_hold_after_end():
    p = Polynomial(1.0, total=10, power=2.0, floor=0.1)
    assert p(0) == 1.0
    assert p(5) == pytest.approx(0.1 + 0.9 * 0.25)
    assert p(10) == p(11) == p(10**6) == 0.1
    lin = Linear(0.0, 1.0, total=4)
    assert [lin(t) for t in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_with_floor_hits_its_points_and_never_climbs_after_its_end():
    c = Cosine(1.0, total=100, floor=0.1)
    assert c(0) == 1.0
    assert c(50) == pytest.approx(0.55)
    assert c(25) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    tail = c.values(np.arange(100, 400))
    assert np.all(tail == 0.1)  # clamped: a cosine that climbed back would rise after step 100
    curve = c.values(np.arange(0, 400))
    assert np.all(np.diff(curve) <= 0)
    assert curve.min() == 0.1


def test_cosine_restarts_restart_and_lengthen():
    r = CosineRestarts(1.0, period=10, mult=2, floor=0.0)
    assert r(0) == 1.0 and r(10) == 1.0 and r(30) == 1.0 and r(70) == 1.0  # starts: 0, 10, 30, 70
    assert r(5) == pytest.approx(0.5) and r(20) == pytest.approx(0.5) and r(50) == pytest.approx(0.5)
    assert r(9) < r(8) < r(7)
    assert r.cycle(29) == (1, 10.0, 20.0)


def test_one_cycle_shape():
    oc = OneCycle(1.0, total=100, pct_start=0.3, div_factor=10.0, final_div_factor=100.0)
    assert oc(0) == pytest.approx(0.1)
    assert oc(29) == pytest.approx(1.0)  # the ramp ends at pct_start * total - 1 (as in PyTorch)
    assert oc(99) == pytest.approx(0.001) and oc(100) == oc(5000) == oc.min_lr == pytest.approx(0.001)
    v = oc.values(range(100))
    assert np.argmax(v) == 29 and np.all(np.diff(v[:30]) > 0) and np.all(np.diff(v[29:]) < 0)
    three = OneCycle(1.0, total=100, pct_start=0.25, three_phase=True, anneal="linear")
    assert three(48) == pytest.approx(three.initial_lr)  # back down at 2 * pct_start * total - 2


def test_cyclic_modes():
    tri = Cyclic(0.1, 1.0, step_size_up=4, step_size_down=6)
    assert [tri(t) for t in (0, 2, 4, 7, 10, 14)] == pytest.approx([0.1, 0.55, 1.0, 0.55, 0.1, 1.0])
    tri2 = Cyclic(0.0 + 1e-3, 1.0 + 1e-3, 5, mode="triangular2")
    assert tri2(5) == pytest.approx(1.001) and tri2(15) == pytest.approx(0.501) and tri2(25) == pytest.approx(0.251)
    ex = Cyclic(0.1, 1.1, 5, mode="exp_range", gamma=0.9)
    assert ex(5) == pytest.approx(0.1 + 0.9**5)


# ---------------------------------------------------------------------------------- warmup and WSD
@pytest.mark.parametrize("inner", [Constant(0.5), Cosine(0.5, 50, floor=0.05), StepDecay(0.5, 7),
                                   Exponential(0.5, 0.97), OneCycle(0.5, 60), Cyclic(0.1, 0.5, 5)])
def test_warmup_is_a_prefix_to_any_schedule(inner):
    w = Warmup(inner, warmup=10)
    target = inner(0)
    assert w(0) == pytest.approx(target / 10) and w(0) > 0  # the first step already trains
    assert w(4) == pytest.approx(target * 5 / 10)
    assert w(9) == pytest.approx(target)  # step warmup-1 is the first at the target
    for t in (10, 11, 17, 40):
        assert w(t) == inner(t - 10)  # then the wrapped schedule from its own beginning
    assert inner.with_warmup(10) == w


def test_warmup_from_a_start_lr():
    w = Warmup(Constant(1.0), warmup=4, start=0.2)
    assert [w(t) for t in range(5)] == pytest.approx([0.4, 0.6, 0.8, 1.0, 1.0])


@pytest.mark.parametrize("shape", S.WSD_SHAPES)
def test_wsd_phases(shape):
    w = WSD(1.0, total=100, warmup=10, decay=20, floor=0.1, shape=shape)
    assert w(0) == pytest.approx(0.1) and w(9) == 1.0
    assert w(10) == w(50) == w(79) == w(80) == 1.0  # stable up to the decay boundary, which is total - decay
    assert w(81) < 1.0
    assert w(100) == w(1000) == 0.1
    expected_frac = {"linear": 0.5, "cosine": 0.5, "1-sqrt": 1 - math.sqrt(0.5)}[shape]
    assert w(90) == pytest.approx(0.1 + 0.9 * expected_frac)
    decay = w.values(np.arange(80, 101))
    assert np.all(np.diff(decay) < 0)


def test_wsd_shapes_differ_where_they_should():
    lin, cos, sq = (WSD(1.0, 100, 0, 40, shape=s) for s in S.WSD_SHAPES)
    assert sq(65) < lin(65) < cos(65)  # 1-sqrt drops fastest early, cosine slowest
    assert WSD(1.0, 100, 0, 40, shape="1-sqrt")(70) == pytest.approx(1 - math.sqrt(0.25))


def test_wsd_equals_its_composition_from_warmup_constant_and_linear():
    w = WSD(2.0, total=60, warmup=8, decay=12, floor=0.2)
    joined = Join([Warmup(Constant(2.0), 8), Linear(2.0, 0.2, 12)], boundaries=[48])
    ts = np.arange(0, 80)
    np.testing.assert_allclose(w.values(ts), joined.values(ts), rtol=1e-12)


def test_wsd_warmup_never_passes_the_peak_between_steps():
    w = WSD(lr=1, total=1_000_000, warmup=1, decay=500_000, floor=0.0, shape="linear")
    assert w(0) == w(0.5) == w(0.99) == 1.0  # was 1.5 and 1.99: the warmup fraction was not clamped at 1
    w = WSD(2.0, total=100, warmup=4, decay=10)
    assert w(3) == w(3.5) == w(3.999) == 2.0 and w(2.5) == pytest.approx(1.75)
    assert WSD(1.0, total=100, warmup=0.5, decay=10)(0.25) == 1.0  # a warmup shorter than one unit
    sampled = WSD(0.1, total=64_000, warmup=6_400, decay=16_000, unit="sample")
    assert max(sampled.values(np.linspace(6_390, 6_400, 1001))) == 0.1


def test_wsd_without_warmup():
    w = WSD(1.0, total=10, warmup=0, decay=5)
    assert w(0) == 1.0 and w(10) == 0.0


# ------------------------------------------------------------------------------ piecewise and join
def test_piecewise_ramps_jumps_and_holds():
    p = Piecewise([(0, 0.0), (10, 1.0), (20, 1.0), (20, 0.5), (30, 0.3)])
    assert p(0) == 0.0 and p(5) == pytest.approx(0.5) and p(15) == 1.0
    assert p(19.999) == 1.0 and p(20) == 0.5  # at a jump the later point holds from its t on
    assert p(25) == pytest.approx(0.4)
    assert p(30) == p(99) == pytest.approx(0.3)
    stairs = Piecewise([(0, 1.0), (10, 0.5), (20, 0.1)], kind="step")
    assert [stairs(t) for t in (0, 9, 10, 19, 20, 50)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


def test_join_starts_each_schedule_from_its_own_zero():
    j = Join([Constant(0.1), Cosine(0.1, 100), Constant(0.01)], boundaries=[50, 150])
    assert j(49) == 0.1 and j(50) == 0.1 and j(100) == pytest.approx(0.05) and j(150) == 0.01
    assert j.horizon is None
    assert Join([Constant(0.1), Cosine(0.1, 100)], boundaries=[50]).horizon == 150


# --------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("make, message", [
    (lambda: Constant(0), "lr must be a finite number > 0"),
    (lambda: Constant(-0.1), "lr must be a finite number > 0"),
    (lambda: Constant(float("nan")), "finite"),
    (lambda: Constant("0.1"), r"lr must be a finite number > 0, got \'0.1\' \(str\)"),
    (lambda: Cosine(0.1, 100, floor=0.2), r"floor \(0.2\) must be <= lr \(0.1\)"),
    (lambda: Cosine(0.1, 0), "total must be a finite number > 0"),
    (lambda: StepDecay(0.1, 10, gamma=1.5), r"gamma must be in \(0, 1\]"),
    (lambda: MultiStep(0.1, [30, 10]), "milestones must be strictly increasing"),
    (lambda: MultiStep(0.1, []), "at least one milestone"),
    (lambda: MultiStep(0.1, [-5]), r"milestones\[0\] must be a finite number > 0"),
    (lambda: WSD(0.1, total=100, warmup=120, decay=10), r"warmup \(120\) \+ decay \(10\) must be <= total \(100\)"),
    (lambda: WSD(0.1, total=100, warmup=10, decay=10, shape="sqrt"), "shape must be one of"),
    (lambda: Warmup(lambda t: 0.1, 10), "schedule must be an lrlab Schedule"),
    (lambda: Warmup(Constant(0.1), 0), "warmup must be a finite number > 0"),
    (lambda: OneCycle(0.1, 100, pct_start=1.2), r"pct_start must be in \(0, 1\)"),
    (lambda: OneCycle(0.1, 5, pct_start=0.2), "pct_start \\* total must be > 1"),
    (lambda: OneCycle(0.1, 100, anneal="cosine"), "anneal must be one of"),
    (lambda: Cyclic(1.0, 0.1, 10), r"max_lr \(0.1\) must be >= base_lr \(1\)"),
    (lambda: Cyclic(0.1, 1.0, 10, mode="sine"), "mode must be one of"),
    (lambda: CosineRestarts(0.1, 10, mult=0.5), "mult must be >= 1"),
    (lambda: Piecewise([(5, 0.1), (10, 0.2)]), "first point must be at t = 0"),
    (lambda: Piecewise([(0, 0.1), (10, 0.2), (5, 0.3)]), "must not decrease"),
    (lambda: Piecewise([(0, 0.1), (5, 0.2), (5, 0.3), (5, 0.4)]), "at most two points"),
    (lambda: Piecewise([(0, 0.1), (5, -0.2)]), r"points\[1\] lr must be a finite number >= 0"),
    (lambda: Piecewise([(0, 0.0)]), "at least one point needs an LR > 0"),
    (lambda: Join([Constant(0.1), Constant(0.2)], boundaries=[]), "one number fewer"),
    (lambda: Join([Constant(0.1), Constant(0.2, unit="sample")], boundaries=[5]), "share one unit"),
    (lambda: Constant(0.1, unit="epoch"), "unit must be one of"),
    (lambda: S.to_samples(Constant(0.1), 0), "batch_size must be an integer >= 1"),
    (lambda: S.to_samples(Constant(0.1, unit="sample"), 32), "already counts samples"),
    (lambda: S.samples_to_steps(-1, 32), "samples must be an integer >= 0"),
])
def test_bad_arguments_raise_value_errors_that_say_what_and_what_is_allowed(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("t", [-1, -0.5, float("nan"), float("inf"), "3", None, True])
def test_progress_must_be_a_finite_number_at_least_zero(t):
    with pytest.raises(ValueError, match="progress t must be"):
        Cosine(0.1, 10)(t)


def test_progress_accepts_numpy_and_tensor_scalars():
    c = Cosine(0.1, 10)
    assert c(np.int64(5)) == c(np.float32(5.0)) == c(torch.tensor(5)) == c(5)


# ----------------------------------------------------------------------------------- repr and eq
SCHEDULES = [
    Constant(0.1), StepDecay(0.1, 30, 0.5), MultiStep(0.1, [10, 20]), Exponential(0.1, 0.99),
    Polynomial(0.1, 100, 2.0, 0.001), Cosine(0.1, 100, 0.001), CosineRestarts(0.1, 10, 2),
    Linear(0.0, 0.1, 50), Warmup(Cosine(0.1, 90), 10), WSD(0.1, 100, 10, 20, 0.0, "1-sqrt"),
    OneCycle(0.1, 100, anneal="linear"), Cyclic(0.01, 0.1, 5, 7, "triangular2"),
    Piecewise([(0, 0.0), (10, 0.1), (10, 0.05)]), Join([Constant(0.1), Cosine(0.1, 10)], [5]),
    S.to_samples(Cosine(0.1, 100), 32), S.to_steps(Cosine(0.1, 6400, unit="sample"), 64), S.seed000_schedule(),
]


@pytest.mark.parametrize("sched", SCHEDULES, ids=lambda s: type(s).__name__)
def test_repr_is_readable_and_rebuilds_the_schedule(sched):
    text = repr(sched)
    assert text.startswith(("to_samples(", "to_steps(", type(sched).__name__ + "("))
    assert "label" not in text and "object at" not in text
    rebuilt = eval(text, vars(S))  # noqa: S307 - the repr is Python that rebuilds the schedule
    assert rebuilt == sched
    ts = np.linspace(0, 3 * (sched.horizon or 100), 37)
    np.testing.assert_array_equal(rebuilt.values(ts), sched.values(ts))


def test_values_matches_calls_and_schedules_are_immutable():
    c = Cosine(0.1, 100)
    ts = [0, 3, 50.5, 99, 200]
    np.testing.assert_array_equal(c.values(ts), [c(t) for t in ts])
    with pytest.raises(AttributeError):
        c.lr = 0.2  # type: ignore[misc]


@PROPERTY
@given(lr=st.floats(1e-6, 10), total=st.integers(1, 10**7), floor_frac=st.floats(0, 1), t=st.floats(0, 1e8),
       shape=st.sampled_from(S.WSD_SHAPES), warm=st.floats(0, 0.5), dec=st.floats(0.01, 0.5))
# WSD(lr=1, total=1000000, warmup=1, decay=500000)(0.5) was 1.5: a fractional t in the last warmup step overshot
@example(lr=1.0, total=1_000_000, floor_frac=0.0, t=0.5, shape="linear", warm=1e-6, dec=0.5)
def test_decays_stay_between_floor_and_peak(lr, total, floor_frac, t, shape, warm, dec):
    floor, top = lr * floor_frac, lr * (1 + 1e-15)  # one rounding step above the peak is fine
    assert floor * (1 - 1e-15) <= Cosine(lr, total, floor)(t) <= top
    assert floor * (1 - 1e-15) <= Polynomial(lr, total, 1.5, floor)(t) <= top
    w = WSD(lr, total, warmup=math.floor(warm * total), decay=max(1, math.floor(dec * total)), floor=floor,
            shape=shape)
    if t < w.warmup:
        assert 0 < w(t) <= top
    elif t < total:
        assert floor * (1 - 1e-15) <= w(t) <= top
    else:
        assert w(t) == floor


_lengths = st.one_of(st.integers(1, 20), st.integers(1, 10**6), st.floats(0.1, 50))
_lrs = st.floats(1e-6, 10)


@st.composite
def _schedule_bounds_and_t(draw):
    """(schedule, lowest LR allowed, highest LR allowed, a real-valued t), for every kind of schedule.

    t is often fractional and often lands a hair below or above a multiple of one of the schedule's lengths:
    where rounding and unclamped fractions push a schedule past its bounds.
    """
    lr = draw(_lrs)
    floor = lr * draw(st.floats(0, 1))
    kind = draw(st.sampled_from(["constant", "step", "multistep", "exponential", "polynomial", "cosine",
                                 "restarts", "linear", "warmup", "wsd", "onecycle", "cyclic", "piecewise",
                                 "join", "samples"]))
    if kind == "constant":
        sched, lo, hi = Constant(lr), lr, lr
    elif kind == "step":
        sched, lo, hi = StepDecay(lr, draw(_lengths), draw(st.floats(1e-3, 1))), 0.0, lr
    elif kind == "multistep":
        gaps = draw(st.lists(_lengths, min_size=1, max_size=5))
        gamma = draw(st.floats(1e-3, 1))
        milestones = [sum(gaps[:i + 1]) for i in range(len(gaps))]
        sched, lo, hi = MultiStep(lr, milestones, gamma), lr * gamma ** len(milestones), lr
    elif kind == "exponential":
        sched, lo, hi = Exponential(lr, draw(st.floats(1e-3, 1))), 0.0, lr
    elif kind == "polynomial":
        sched, lo, hi = Polynomial(lr, draw(_lengths), draw(st.floats(0.1, 4)), floor), floor, lr
    elif kind == "cosine":
        sched, lo, hi = Cosine(lr, draw(_lengths), floor), floor, lr
    elif kind == "restarts":
        sched, lo, hi = CosineRestarts(lr, draw(_lengths), draw(st.sampled_from([1, 2, 1.5])), floor), floor, lr
    elif kind == "linear":
        start, end = draw(_lrs), draw(st.one_of(st.just(0.0), _lrs))
        sched, lo, hi = Linear(start, end, draw(_lengths)), min(start, end), max(start, end)
    elif kind == "warmup":
        start = draw(st.one_of(st.just(0.0), _lrs))
        sched = Warmup(Cosine(lr, draw(_lengths), floor), draw(_lengths), start=start)
        lo, hi = min(start, floor), max(start, lr)
    elif kind == "wsd":
        total = draw(_lengths)
        warmup = draw(st.one_of(st.just(0), st.floats(0, total / 2), st.integers(0, math.floor(total / 2))))
        decay = draw(st.floats(min(1e-3, total - warmup), total - warmup))
        assume(warmup + decay <= total)  # the subtraction above may round up by one unit in the last place
        sched = WSD(lr, total, warmup, decay, floor, draw(st.sampled_from(S.WSD_SHAPES)))
        lo, hi = None, lr  # lo depends on the phase: below
    elif kind == "onecycle":
        total = draw(st.integers(4, 10**6))
        pct = draw(st.floats(min_value=1.5 / total, max_value=0.45))
        sched = OneCycle(lr, total, pct, draw(st.sampled_from(S.ONE_CYCLE_ANNEALS)), three_phase=draw(st.booleans()))
        lo, hi = sched.min_lr, lr
    elif kind == "cyclic":
        base = lr / draw(st.floats(1, 1e3))
        sched = Cyclic(base, lr, draw(_lengths), draw(_lengths), draw(st.sampled_from(S.CYCLIC_MODES)),
                       draw(st.floats(0.5, 1)))
        lo, hi = base, lr
    elif kind == "piecewise":
        gaps = draw(st.lists(st.one_of(st.just(0), _lengths), min_size=0, max_size=5))
        ts = [0] + [sum(gaps[:i + 1]) for i in range(len(gaps))]
        ts = [t for i, t in enumerate(ts) if i < 2 or t != ts[i - 2]]  # at most two points share a t
        lrs = [draw(st.one_of(st.just(0.0), _lrs)) for _ in ts]
        lrs[draw(st.integers(0, len(lrs) - 1))] = lr
        sched = Piecewise(list(zip(ts, lrs, strict=True)), draw(st.sampled_from(S.PIECEWISE_KINDS)))
        lo, hi = min(lrs), max(lrs)
    elif kind == "join":
        first, second = Cosine(lr, draw(_lengths), floor), Constant(draw(st.floats(floor or 1e-6, lr)))
        sched, lo, hi = Join([first, second], [draw(_lengths)]), floor, lr
    else:
        inner = Cyclic(lr / 10, lr, draw(_lengths))
        sched, lo, hi = S.to_samples(inner, draw(st.integers(1, 512))), lr / 10, lr
    lengths = [x for x in vars(sched).values() if isinstance(x, int | float) and not isinstance(x, bool) and x > 0]
    edge = draw(st.sampled_from(lengths + [a + b for a in lengths for b in lengths] + [1]))
    t = draw(st.one_of(
        st.floats(0, 3 * (sched.horizon or 100)),
        st.tuples(st.integers(0, 10**7), st.floats(0, 1, exclude_max=True)).map(lambda kf: kf[0] + kf[1]),
        st.tuples(st.integers(1, 10**7), st.sampled_from([0, math.inf])).map(
            lambda kd: math.nextafter(kd[0] * edge, kd[1])),
    ))
    if kind == "wsd":
        lo = 0.0 if t < sched.warmup else floor  # a warmup climbs from 0
    return sched, lo, hi, t


@settings(PROPERTY, max_examples=300)
@given(case=_schedule_bounds_and_t())
@example(case=(WSD(lr=1, total=1_000_000, warmup=1, decay=500_000, floor=0.0, shape="linear"), 0.0, 1.0, 0.5))
# Cyclic's position in its cycle, t - floor(t / size) * size, came out a hair below 0 here: the LR below base_lr
@example(case=(Cyclic(0.1, 1.0, 0.3, 0.3), 0.1, 1.0, math.nextafter(4_205_836 * 0.6, 0)))
def test_every_schedule_stays_between_its_floor_and_its_peak_at_every_real_t(case):
    sched, lo, hi, t = case
    lr = sched(t)
    # one rounding of the larger value is allowed either way, no more
    assert lo - 1e-15 * hi <= lr <= hi * (1 + 1e-15), f"{sched!r}({t!r}) = {lr!r}, outside [{lo!r}, {hi!r}]"


@settings(PROPERTY, max_examples=300)
@given(up=_lengths, down=_lengths, mode=st.sampled_from(S.CYCLIC_MODES), k=st.integers(1, 10**7),
       towards=st.sampled_from([0.0, math.inf]))
@example(up=0.3, down=0.3, mode="triangular", k=4_205_836, towards=0.0)
def test_cyclic_stays_between_base_and_max_a_hair_from_a_cycle_edge(up, down, mode, k, towards):
    sched = Cyclic(0.1, 1.0, up, down, mode, gamma=0.999)
    t = math.nextafter(k * (up + down), towards)  # t / size may round to the other side of the edge
    assert 0.1 <= sched(t) <= 1.0, f"{sched!r}({t!r}) = {sched(t)!r}"


# ------------------------------------------------------------------------------- steps and samples
def test_step_sample_conversions():
    assert S.steps_to_samples(100, 32) == 3200
    assert S.samples_to_steps(3200, 32) == 100
    assert S.samples_to_steps(3201, 32) == 101  # a last, partial batch is one more step
    assert S.samples_to_steps(60_000_000, 512) == 117_188
    assert S.samples_to_steps(0, 7) == 0


def test_to_samples_and_to_steps_reindex_the_same_curve():
    steps = WSD(0.1, total=100, warmup=10, decay=30, shape="cosine")
    in_samples = S.to_samples(steps, 32)
    assert in_samples.unit == "sample" and in_samples.horizon == 3200
    for k in (0, 5, 9, 10, 55, 70, 85, 99, 100, 150):
        assert in_samples(k * 32) == steps(k)
    back = S.to_steps(in_samples, 32)
    assert back.unit == "step" and all(back(k) == steps(k) for k in range(120))


def test_sample_indexed_lr_does_not_depend_on_the_batch_size_even_when_it_changes():
    sched = WSD(0.01, total=64_000, warmup=6_400, decay=16_000, floor=1e-4, unit="sample")
    runs = {
        "batch 32": [32] * 2000,
        "batch 128": [128] * 500,
        "32 then 128": [32] * 1000 + [128] * 250,  # changes mid-run, at 32,000 samples
    }
    seen = {}
    for name, sizes in runs.items():
        samples, lrs = S.lr_trajectory(sched, sizes)
        assert samples[-1] + sizes[-1] == 64_000
        seen[name] = dict(zip(samples.tolist(), lrs.tolist(), strict=True))
    common = set.intersection(*(set(d) for d in seen.values()))
    assert len(common) >= 250
    for n in common:
        values = {name: d[n] for name, d in seen.items()}
        assert len(set(values.values())) == 1, (n, values)
        assert values["batch 32"] == sched(n)


def test_step_indexed_lr_does_depend_on_the_batch_size():
    sched = Cosine(0.01, total=2000)  # written for batch 32: 2000 steps = 64,000 samples
    small_samples, small = S.lr_trajectory(sched, [32] * 2000)
    big_samples, big = S.lr_trajectory(sched, [128] * 500)
    at_16000_small = small[np.searchsorted(small_samples, 16_000)]
    at_16000_big = big[np.searchsorted(big_samples, 16_000)]
    assert at_16000_big > at_16000_small  # with 4x the batch, 16,000 samples are only a quarter of the steps
    assert big[-1] > 0.008  # and the run's data ends when the schedule is a quarter done
    assert small[-1] < 1e-7


def test_lr_trajectory_validates():
    with pytest.raises(ValueError, match="at least one batch size"):
        S.lr_trajectory(Constant(0.1), [])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        S.lr_trajectory(Constant(0.1), [32, 0])


# ------------------------------------------------------------------------------------- the seed chart
def test_seed000_schedule_follows_the_chart():
    s = S.seed000_schedule()
    assert s.unit == "sample" and s.horizon == S.SEED000_TOTAL == 60_000_000
    assert s(0) == 0.0
    assert s(1_000_000) == pytest.approx(2.5e-5)
    assert s(2_000_000) == s(30_000_000) == s(45_000_000) == 5e-5
    assert s(47_500_000) == pytest.approx(4.75e-5)
    assert s(49_999_999) == pytest.approx(4.5e-5, rel=1e-6) and s(50_000_000) == pytest.approx(2.7e-5)
    assert s(54_999_999) == pytest.approx(2.6e-5, rel=1e-6) and s(55_000_000) == pytest.approx(0.9e-5)
    assert s(60_000_000) == s(59_000_000) == pytest.approx(0.9e-5)
    after_warmup = s.values(np.linspace(2e6, 6e7, 3000))
    assert np.all(np.diff(after_warmup) <= 0)
    drops = -np.diff(s.values(np.arange(0, 60_000_001, 100_000)))
    assert sorted(np.argsort(drops)[-2:] + 1) == [500, 550]  # the two step drops: at 50M and 55M


# ------------------------------------------------------------------------------- the LambdaLR adapter
def _model_and_optimizer(lr: float = 123.0, groups: int = 1):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    params = list(model.parameters())
    if groups == 1:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    else:
        opt = torch.optim.SGD([{"params": params[:2]}, {"params": params[2:], "lr": lr / 10}], lr=lr)
    return model, opt


def _train_step(model, opt, batch: int) -> None:
    x = torch.randn(batch, 3)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_lambda_lr_gives_exactly_the_schedule_at_each_step_without_warnings():
    sched = WSD(0.05, total=40, warmup=5, decay=15, floor=0.001, shape="cosine")
    model, opt = _model_and_optimizer(lr=123.0)  # the optimizer's own lr is replaced
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler = S.as_lambda_lr(opt, sched)
        assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)
        assert not hasattr(scheduler, "advance")  # so lrlab.training.fit calls .step()
        used = []
        for _ in range(45):
            used.append(opt.param_groups[0]["lr"])
            _train_step(model, opt, 8)
            scheduler.step()
    assert used == [sched(t) for t in range(45)]  # exact, not approximately
    assert scheduler.get_last_lr() == [sched(45)]
    assert scheduler.progress == 45 and scheduler.schedule is sched


def test_lambda_lr_with_one_schedule_per_parameter_group():
    a, b = Cosine(0.1, 10), Constant(0.01)
    model, opt = _model_and_optimizer(groups=2)
    scheduler = S.as_lambda_lr(opt, [a, b])
    for t in range(12):
        assert [g["lr"] for g in opt.param_groups] == [a(t), b(t)]
        _train_step(model, opt, 4)
        scheduler.step()
    with pytest.raises(ValueError, match="one per parameter group"):
        S.as_lambda_lr(_model_and_optimizer(groups=2)[1], [a, b, a])


def test_lambda_lr_accepts_a_plain_function_of_the_step():
    model, opt = _model_and_optimizer()
    scheduler = S.as_lambda_lr(opt, lambda t: 0.1 / (1 + t))
    for t in range(5):
        assert opt.param_groups[0]["lr"] == 0.1 / (1 + t)
        _train_step(model, opt, 4)
        scheduler.step()


def test_sample_mode_follows_the_samples_seen_with_changing_batch_sizes():
    sched = S.seed000_schedule()
    model, opt = _model_and_optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler = S.as_lambda_lr(opt, sched, unit="sample")
        samples, used, expected = 0, [], []
        for batch in [7] * 5 + [3] * 4 + [11] * 3:
            used.append(opt.param_groups[0]["lr"])
            expected.append(sched(samples))
            _train_step(model, opt, batch)
            scheduler.advance(batch)
            samples += batch
    assert used == expected and scheduler.samples == samples == scheduler.progress


def test_sample_mode_on_a_real_schedule_scale():
    sched = S.to_samples(Cosine(0.1, 100), 32)
    model, opt = _model_and_optimizer()
    scheduler = S.as_lambda_lr(opt, sched)  # unit taken from the schedule
    assert isinstance(scheduler, S.SampleScheduleLR)
    for k in range(1, 30):
        _train_step(model, opt, 64)
        scheduler.advance(64)
        assert opt.param_groups[0]["lr"] == sched(64 * k) == Cosine(0.1, 100)(2 * k)


def test_sample_mode_refuses_step_and_bad_counts():
    model, opt = _model_and_optimizer()
    scheduler = S.as_lambda_lr(opt, S.seed000_schedule())
    _train_step(model, opt, 4)
    with pytest.raises(RuntimeError, match="advance"):
        scheduler.step()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
            scheduler.advance(bad)


def test_unit_mismatch_is_explained():
    _, opt = _model_and_optimizer()
    with pytest.raises(ValueError, match=r"counts steps but unit='sample'.*to_samples"):
        S.as_lambda_lr(opt, Cosine(0.1, 10), unit="sample")
    with pytest.raises(ValueError, match=r"counts samples but unit='step'.*to_steps"):
        S.as_lambda_lr(opt, S.seed000_schedule(), unit="step")
    with pytest.raises(ValueError, match="optimizer must be a torch.optim.Optimizer"):
        S.as_lambda_lr("sgd", Cosine(0.1, 10))


def test_state_dict_round_trip_resumes_the_schedule():
    sched = Cosine(0.1, 50, floor=0.01)
    model, opt = _model_and_optimizer()
    scheduler = S.as_lambda_lr(opt, S.to_samples(sched, 16))
    for _ in range(7):
        _train_step(model, opt, 16)
        scheduler.advance(16)
    state = scheduler.state_dict()
    model2, opt2 = _model_and_optimizer()
    resumed = S.as_lambda_lr(opt2, S.to_samples(sched, 16))
    resumed.load_state_dict(state)
    assert resumed.samples == 112
    _train_step(model2, opt2, 16)
    resumed.advance(16)
    assert opt2.param_groups[0]["lr"] == sched(8)


def test_fit_drives_a_sample_indexed_schedule_through_advance():
    from lrlab.data import load_task
    from lrlab.models import MLP
    from lrlab.training import fit

    task = load_task(seed=0, batch_size=48)  # 800 training rows: 16 full batches and one of 32
    sched = S.WSD(0.05, total=4 * 800, warmup=400, decay=1600, floor=1e-3, unit="sample")
    torch.manual_seed(0)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        trace = fit(model, task, opt, epochs=4, scheduler=S.as_lambda_lr(opt, sched), device="cpu",
                    progress=False)
    steps = trace.steps
    assert len(steps) == 4 * 17
    before = 0
    for rec in steps:
        assert rec["lr"] == sched(before), rec
        before = rec["samples"]
    assert before == 3200 and opt.param_groups[0]["lr"] == sched(3200) == 1e-3
