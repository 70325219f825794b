"""03_lr_schedules: the reference passes, other correct answers pass, plausible mistakes lose points."""

import re

import pytest

from nbharness import answer_source, assert_caught, assert_full_marks, run_assignment

A = "03_lr_schedules"


def test_reference_solution_gets_full_marks():
    report = run_assignment(A, params={"N_EPOCHS": 2})
    assert_full_marks(report, 22)


CORRECT = {
    "linear_warmup": '''
def linear_warmup(t, peak, warmup):
    return peak * min(1.0, (t + 1) / warmup)
''',
    "step_decay": '''
def step_decay(t, lr, step_size, gamma):
    value = lr
    for _ in range(int(t) // step_size):
        value *= gamma
    return value
''',
    "cosine_with_floor": '''
def cosine_with_floor(t, lr, total, floor=0.0):
    if t >= total:
        return floor
    return floor + (lr - floor) * math.cos(math.pi * t / (2 * total)) ** 2
''',
    "wsd": '''
def wsd(t, lr, total, warmup, decay, floor=0.0, shape="linear"):
    shapes = {"linear": lambda p: 1 - p, "cosine": lambda p: 0.5 + 0.5 * math.cos(math.pi * p),
              "1-sqrt": lambda p: 1 - p ** 0.5}
    if t >= total:
        return floor
    if t >= total - decay:
        return floor + (lr - floor) * shapes[shape]((t - total + decay) / decay)
    return linear_warmup(t, lr, warmup) if warmup else lr
''',
    "conversions": '''
def steps_to_samples(steps, batch_size):
    return int(steps) * int(batch_size)

def samples_to_steps(samples, batch_size):
    steps, rest = divmod(samples, batch_size)
    return steps + (rest > 0)
''',
    "lrs_for_run": '''
def lrs_for_run(schedule, batch_sizes):
    import itertools
    starts = itertools.accumulate([0] + list(batch_sizes[:-1]))
    return [float(schedule(n)) for n in starts]
''',
    "piecewise_lr": '''
def piecewise_lr(t, points):
    lr = points[0][1]
    for i in range(len(points) - 1):
        (t0, a), (t1, b) = points[i], points[i + 1]
        if t >= t1:
            lr = b
        elif t >= t0:
            return a + (b - a) * (t - t0) / (t1 - t0)
    return lr
''',
    # read off the chart a little differently: still within the tolerance the tests announce
    "seed000_points": '''
SEED000_POINTS = [(0, 0), (2.1e6, 5.0e-5), (45.5e6, 5.0e-5), (50e6, 4.4e-5), (50e6, 2.7e-5),
                  (55e6, 2.6e-5), (55e6, 9e-6), (60e6, 9e-6)]
''',
    "mc_batch_change": 'ANSWER_BATCH_CHANGE = "b "',
    "mc_past_tmax": "ANSWER_PAST_TMAX = 'C'",
}


def test_differently_written_correct_answers_get_full_marks():
    report = run_assignment(A, replace=CORRECT, params={"N_EPOCHS": 2})
    assert_full_marks(report)


_REF_WSD = '''
def wsd(t, lr, total, warmup, decay, floor=0.0, shape="linear"):
    if t < warmup:
        return lr * (t + 1) / warmup
    start = {start}
    if t < start:
        return lr
    p = {p}
    s = {{"linear": 1 - p, "cosine": (1 + math.cos(math.pi * p)) / 2, "1-sqrt": {sqrt}}}[{shape}]
    return {ret}
'''


def _wsd(start="total - decay", p="min(1.0, (t - start) / decay)", sqrt="1 - math.sqrt(p)", shape="shape",
         ret="floor + (lr - floor) * s"):
    return _REF_WSD.format(start=start, p=p, sqrt=sqrt, shape=shape, ret=ret)


MISTAKES = {
    # 1 warmup
    "warmup gives LR 0 at the first step": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return peak * t / warmup if t < warmup else peak
'''),
    "warmup reaches the peak one step late": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return peak * (t + 1) / (warmup + 1) if t < warmup else peak
'''),
    "warmup hard-codes the visible example": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return [0.025, 0.05, 0.075][t] if t < 3 else 0.1
'''),
    # 2 step decay
    "step decay one step early": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * gamma ** ((t + 1) // step_size)
'''),
    "step decay one block late": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * gamma ** max(0, (t - 1) // step_size)
'''),
    "step decay is smooth (exponential)": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * gamma ** (t / step_size)
'''),
    # 3 cosine
    "cosine climbs after its end": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return floor + (lr - floor) * (1 + math.cos(math.pi * t / total)) / 2
'''),
    "cosine ignores the floor": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return lr * (1 + math.cos(math.pi * min(t, total) / total)) / 2
'''),
    "cosine adds the floor on top": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return floor + lr * (1 + math.cos(math.pi * min(t, total) / total)) / 2
'''),
    "cosine clamps to the floor with max (still climbs)": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return max(floor, floor + (lr - floor) * (1 + math.cos(math.pi * t / total)) / 2)
'''),
    # 4 WSD
    "WSD decay starts one step early": ("wsd", _wsd(start="total - decay - 1")),
    "WSD decay starts right after the warmup": ("wsd", _wsd(start="warmup", p="min(1.0, (t - start) / decay)")),
    "WSD decay measured from the end of the stable phase plus warmup": ("wsd", _wsd(start="total - decay + warmup")),
    "WSD ignores the floor": ("wsd", _wsd(ret="lr * s")),
    "WSD decay does not stop at total": ("wsd", _wsd(p="(t - start) / decay", sqrt="1 - math.sqrt(min(p, 1))")),
    "WSD 1-sqrt written as sqrt(1 - p)": ("wsd", _wsd(sqrt="math.sqrt(1 - p)")),
    "WSD ignores the shape": ("wsd", _wsd(shape='"linear"')),
    "WSD warmup gives LR 0 at the first step": ("wsd", _wsd().replace("lr * (t + 1) / warmup", "lr * t / warmup")),
    # 5 conversions: steps confused with samples
    "samples_to_steps multiplies (steps confused with samples)": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    return samples * batch_size
'''),
    "steps_to_samples divides (steps confused with samples)": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps // batch_size

def samples_to_steps(samples, batch_size):
    return -(-samples // batch_size)
'''),
    "samples_to_steps rounds down": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    return samples // batch_size
'''),
    "samples_to_steps returns a float": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    return math.ceil(samples / batch_size) * 1.0
'''),
    # 6 the LRs of a run
    "lrs_for_run uses the step index (steps confused with samples)": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    return [schedule(k) for k in range(len(batch_sizes))]
'''),
    "lrs_for_run uses the samples after the step": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    out, seen = [], 0
    for b in batch_sizes:
        seen += b
        out.append(schedule(seen))
    return out
'''),
    "lrs_for_run assumes a fixed batch size": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    return [schedule(k * batch_sizes[0]) for k in range(len(batch_sizes))]
'''),
    # 7 piecewise and the seed chart
    "piecewise takes the first point at a jump": ("piecewise_lr", '''
def piecewise_lr(t, points):
    for (t0, lr0), (t1, lr1) in itertools.pairwise(points):
        if t0 <= t <= t1:
            return lr0 if t1 == t0 else lr0 + (lr1 - lr0) * (t - t0) / (t1 - t0)
    return points[-1][1]
'''),
    "piecewise is a staircase": ("piecewise_lr", '''
def piecewise_lr(t, points):
    lr = points[0][1]
    for t0, lr0 in points:
        if t >= t0:
            lr = lr0
    return lr
'''),
    "piecewise extrapolates after the last point": ("piecewise_lr", '''
def piecewise_lr(t, points):
    for (t0, lr0), (t1, lr1) in itertools.pairwise(points):
        if t0 <= t < t1:
            return lr0 + (lr1 - lr0) * (t - t0) / (t1 - t0)
    (t0, lr0), (t1, lr1) = points[-2], points[-1]
    return lr1 + (lr1 - lr0) * (t - t1) / (t1 - t0) if t1 > t0 else lr1
'''),
    "seed chart without the warmup": ("seed000_points", '''
SEED000_POINTS = [(0, 5e-5), (45_000_000, 5e-5), (50_000_000, 4.5e-5), (50_000_000, 2.7e-5),
                  (55_000_000, 2.6e-5), (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
'''),
    "seed chart with the first drop at 45M": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (45_000_000, 2.7e-5),
                  (55_000_000, 2.6e-5), (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
'''),
    "seed chart in millions, not samples": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2, 5e-5), (45, 5e-5), (50, 4.5e-5), (50, 2.7e-5), (55, 2.6e-5), (55, 0.9e-5),
                  (60, 0.9e-5)]
'''),
    "seed chart with the peak at 5e-4": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-4), (45_000_000, 5e-4), (50_000_000, 4.5e-4), (50_000_000, 2.7e-4),
                  (55_000_000, 2.6e-4), (55_000_000, 0.9e-4), (60_000_000, 0.9e-4)]
'''),
    "seed chart that skips the slight decays": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (50_000_000, 5e-5), (50_000_000, 2.7e-5), (55_000_000, 2.7e-5),
                  (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
'''),
    # 9 multiple choice
    "9a: the LR follows the samples": ("mc_batch_change", 'ANSWER_BATCH_CHANGE = "A"'),
    "9a: stops at step 10,000": ("mc_batch_change", 'ANSWER_BATCH_CHANGE = "D"'),
    "9b: stays at eta_min": ("mc_past_tmax", 'ANSWER_PAST_TMAX = "A"'),
    "9b: not answered": ("mc_past_tmax", "ANSWER_PAST_TMAX = None"),
}

# the cell a mistake must fail, and the last cell to run (later exercises need not run)
_STOP = {g: f"{g}_tests" for g in {g for g, _ in MISTAKES.values()}}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, stop_after=_STOP[grade_id], params={"N_EPOCHS": 1})
    assert_caught(report, grade_id, mistake)


def test_seed_chart_with_a_drop_half_a_million_samples_late_still_passes():
    late = '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (50_500_000, 4.45e-5), (50_500_000, 2.7e-5),
                  (55_000_000, 2.6e-5), (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
'''
    report = run_assignment(A, replace={"seed000_points": late}, stop_after="seed000_points_tests")
    assert "seed000_points_tests" not in report.failed(), report.summary()


# Charts that miss a drop: the visible tests alone (hidden region removed) must already catch each.
MISSED_DROPS = {
    "no drop at 50M": '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (50_000_000, 4.5e-5), (55_000_000, 4.4e-5),
                  (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
''',
    "no drop at 55M": '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (50_000_000, 4.5e-5), (50_000_000, 2.7e-5),
                  (55_000_000, 2.6e-5), (60_000_000, 0.9e-5)]
''',
    "slopes instead of drops": '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (60_000_000, 0.9e-5)]
''',
}


@pytest.mark.parametrize("chart", sorted(MISSED_DROPS))
def test_the_visible_tests_catch_a_chart_that_misses_a_drop(chart):
    visible = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n", "",
                     answer_source(A, "seed000_points_tests"), flags=re.S)
    assert "HIDDEN" not in visible and "checks.passed" in visible
    report = run_assignment(A, replace={"seed000_points": MISSED_DROPS[chart], "seed000_points_tests": visible},
                            stop_after="seed000_points_tests")
    assert "seed000_points_tests" in report.failed(), f"{chart!r} passed the visible tests:\n{report.summary()}"
