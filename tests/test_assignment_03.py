"""03_lr_schedules: the reference passes, other correct answers pass (float32 included), plausible mistakes lose the
points of their exercise (with the hint for the mistake made, from the visible tests alone where the mistake is a
common one), shortcuts into lrlab.schedules score 0 with the "write it yourself" message, and honest warnings cost
nothing."""

import re

import pytest

from nbharness import (
    answer_source,
    assert_caught,
    assert_full_marks,
    assert_no_stderr,
    assert_shortcut_caught,
    run_assignment,
)

A = "03_lr_schedules"
POINTS = 22  # + 3 graded by hand
SMALL = {"N_EPOCHS": 1}  # the training demo shrinks; the graded cells are unchanged


def _run(replace, stop_after=None):
    return run_assignment(A, replace=replace, stop_after=stop_after, params=SMALL)


def _visible_only(grade_id):
    """The test cell of ``grade_id`` without its hidden tests (what the learner runs before grading)."""
    visible = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n", "", answer_source(A, f"{grade_id}_tests"),
                     flags=re.S)
    assert "HIDDEN" not in visible and "checks.passed" in visible
    return visible


def test_reference_solution_gets_full_marks():
    report = run_assignment(A, params={"N_EPOCHS": 2})
    assert_full_marks(report, POINTS)
    assert_no_stderr(report)


# Correct answers in other idioms: name -> (grade_id, source). Each must keep the points of its exercise.
CORRECT = {
    # 1 warmup
    "warmup with min": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return peak * min(1.0, (t + 1) / warmup)
'''),
    "warmup in numpy float32": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return np.float32(peak) * np.float32(min(t + 1, warmup)) / np.float32(warmup)
'''),
    "warmup in torch float32, returned with .item()": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return (torch.tensor((t + 1) / warmup, dtype=torch.float32).clamp(max=1.0) * peak).item()
'''),
    "warmup as peak / warmup * (t + 1)": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    if t >= warmup:
        return peak
    return peak / warmup * (t + 1)
'''),
    # 2 step decay
    "step decay with a loop": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    value = lr
    for _ in range(int(t) // step_size):
        value *= gamma
    return value
'''),
    "step decay with math.pow and floor": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * math.pow(gamma, math.floor(t / step_size))
'''),
    "step decay in torch float32, returned with .item()": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return (torch.tensor(gamma, dtype=torch.float32) ** (t // step_size) * lr).item()
'''),
    "step decay with numpy": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * np.power(gamma, np.floor_divide(t, step_size))
'''),
    # 3 cosine
    "cosine as cos^2 of the half angle": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    if t >= total:
        return floor
    return floor + (lr - floor) * math.cos(math.pi * t / (2 * total)) ** 2
'''),
    "cosine in numpy float32": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    p = np.clip(np.float32(t) / np.float32(total), 0, 1)
    return np.float32(floor) + np.float32(lr - floor) * (1 + np.cos(np.float32(np.pi) * p)) / 2
'''),
    "cosine as a float64 torch tensor": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    tt = torch.tensor(min(t, total), dtype=torch.float64)
    return floor + (lr - floor) * 0.5 * (1 + torch.cos(torch.pi * tt / total))
'''),
    "cosine as 1 - sin^2": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    if t > total:
        t = total
    return floor + (lr - floor) * (1 - math.sin(math.pi * t / (2 * total)) ** 2)
'''),
    # 4 WSD
    "WSD with a dict of shapes and linear_warmup": ("wsd", '''
def wsd(t, lr, total, warmup, decay, floor=0.0, shape="linear"):
    shapes = {"linear": lambda p: 1 - p, "cosine": lambda p: 0.5 + 0.5 * math.cos(math.pi * p),
              "1-sqrt": lambda p: 1 - p ** 0.5}
    if t >= total:
        return floor
    if t >= total - decay:
        return floor + (lr - floor) * shapes[shape]((t - total + decay) / decay)
    return linear_warmup(t, lr, warmup) if warmup else lr
'''),
    "WSD in numpy float32": ("wsd", '''
def wsd(t, lr, total, warmup, decay, floor=0.0, shape="linear"):
    t, lr, floor = np.float32(t), np.float32(lr), np.float32(floor)
    if t < warmup:
        return lr * (t + 1) / np.float32(warmup)
    p = np.clip((t - np.float32(total - decay)) / np.float32(decay), 0, 1)
    s = {"linear": 1 - p, "cosine": (1 + np.cos(np.float32(np.pi) * p)) / 2, "1-sqrt": 1 - np.sqrt(p)}[shape]
    return floor + (lr - floor) * s
'''),
    "WSD with torch and match": ("wsd", '''
def wsd(t, lr, total, warmup, decay, floor=0.0, shape="linear"):
    if t < warmup:
        return lr * (t + 1) / warmup
    p = torch.tensor((t - (total - decay)) / decay, dtype=torch.float64).clamp(0.0, 1.0)
    match shape:
        case "linear":
            s = 1 - p
        case "cosine":
            s = (1 + torch.cos(torch.pi * p)) / 2
        case "1-sqrt":
            s = 1 - torch.sqrt(p)
    return (floor + (lr - floor) * s).item()
'''),
    "WSD phase by phase with elif": ("wsd", '''
def wsd(t, lr, total, warmup, decay, floor=0.0, shape="linear"):
    start = total - decay
    if t < warmup:
        lr_t = lr * (t + 1) / warmup
    elif t < start:
        lr_t = lr
    elif t < total:
        p = (t - start) / decay
        s = 1 - p if shape == "linear" else (1 + math.cos(math.pi * p)) / 2 if shape == "cosine" else 1 - math.sqrt(p)
        lr_t = floor + (lr - floor) * s
    else:
        lr_t = floor
    return lr_t
'''),
    "WSD with a dataclass of its own (any dataclass's generated __init__ is not lrlab's)": ("wsd", '''
from dataclasses import dataclass

@dataclass(frozen=True)
class _Phases:
    warmup: float
    start: float
    total: float

def wsd(t, lr, total, warmup, decay, floor=0.0, shape="linear"):
    ph = _Phases(warmup, total - decay, total)
    if t < ph.warmup:
        return lr * (t + 1) / ph.warmup
    if t < ph.start:
        return lr
    p = min(1.0, (t - ph.start) / decay)
    s = {"linear": 1 - p, "cosine": (1 + math.cos(math.pi * p)) / 2, "1-sqrt": 1 - math.sqrt(p)}[shape]
    return floor + (lr - floor) * s
'''),
    # 5 conversions
    "conversions with divmod": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return int(steps) * int(batch_size)

def samples_to_steps(samples, batch_size):
    steps, rest = divmod(samples, batch_size)
    return steps + (rest > 0)
'''),
    "conversions with (n + B - 1) // B": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return batch_size * steps

def samples_to_steps(samples, batch_size):
    return (samples + batch_size - 1) // batch_size
'''),
    "conversions with fractions.Fraction": ("conversions", '''
from fractions import Fraction

def steps_to_samples(steps, batch_size):
    return int(Fraction(steps) * batch_size)

def samples_to_steps(samples, batch_size):
    return math.ceil(Fraction(samples, batch_size))
'''),
    "conversions in numpy int64": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return int(np.int64(steps) * np.int64(batch_size))

def samples_to_steps(samples, batch_size):
    return int(-(-np.int64(samples) // np.int64(batch_size)))
'''),
    # 6 the LRs of a run
    "lrs_for_run with itertools.accumulate": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    import itertools
    starts = itertools.accumulate([0] + list(batch_sizes[:-1]))
    return [float(schedule(n)) for n in starts]
'''),
    "lrs_for_run returning a numpy array": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    starts = np.concatenate([[0], np.cumsum(batch_sizes)[:-1]])
    return np.array([schedule(int(n)) for n in starts])
'''),
    "lrs_for_run with torch.cumsum, LRs as tensors": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    starts = torch.cumsum(torch.tensor([0] + list(batch_sizes[:-1])), dim=0)
    return [schedule(n) for n in starts]
'''),
    "lrs_for_run returning a tuple, index loop": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    out = []
    for k in range(len(batch_sizes)):
        out.append(schedule(sum(batch_sizes[:k])))
    return tuple(out)
'''),
    # 7a piecewise
    "piecewise, keeping the last LR passed": ("piecewise_lr", '''
def piecewise_lr(t, points):
    lr = points[0][1]
    for i in range(len(points) - 1):
        (t0, a), (t1, b) = points[i], points[i + 1]
        if t >= t1:
            lr = b
        elif t >= t0:
            return a + (b - a) * (t - t0) / (t1 - t0)
    return lr
'''),
    "piecewise with numpy.searchsorted": ("piecewise_lr", '''
def piecewise_lr(t, points):
    ts = np.array([p[0] for p in points], dtype=np.float64)
    lrs = np.array([p[1] for p in points], dtype=np.float64)
    i = int(np.searchsorted(ts, t, side="right")) - 1
    if i >= len(points) - 1:
        return lrs[-1]
    return lrs[i] + (lrs[i + 1] - lrs[i]) * (t - ts[i]) / (ts[i + 1] - ts[i])
'''),
    "piecewise with bisect and a weighted mean": ("piecewise_lr", '''
import bisect

def piecewise_lr(t, points):
    i = bisect.bisect_right([p[0] for p in points], t) - 1
    if i == len(points) - 1:
        return points[-1][1]
    (t0, lr0), (t1, lr1) = points[i], points[i + 1]
    w = (t - t0) / (t1 - t0)
    return (1 - w) * lr0 + w * lr1
'''),
    "piecewise scanning from the end, in float32": ("piecewise_lr", '''
def piecewise_lr(t, points):
    for i in range(len(points) - 1, -1, -1):
        if points[i][0] <= t:
            break
    if i == len(points) - 1:
        return np.float32(points[i][1])
    t0, lr0 = np.float32(points[i][0]), np.float32(points[i][1])
    t1, lr1 = np.float32(points[i + 1][0]), np.float32(points[i + 1][1])
    return lr0 + (lr1 - lr0) * ((np.float32(t) - t0) / (t1 - t0))
'''),
    # 7b the seed chart, read a little differently: within the tolerance the text announces
    "seed chart read a little differently": ("seed000_points", '''
SEED000_POINTS = [(0, 0), (2.1e6, 5.0e-5), (45.5e6, 5.0e-5), (50e6, 4.4e-5), (50e6, 2.7e-5),
                  (55e6, 2.6e-5), (55e6, 9e-6), (60e6, 9e-6)]
'''),
    "seed chart as lists of numpy numbers": ("seed000_points", '''
SEED000_POINTS = [[np.int64(0), np.float64(0.0)], [np.int64(2_000_000), np.float64(5e-5)],
                  [np.int64(45_000_000), np.float64(5e-5)], [np.int64(50_000_000), np.float64(4.5e-5)],
                  [np.int64(50_000_000), np.float64(2.7e-5)], [np.int64(55_000_000), np.float64(2.6e-5)],
                  [np.int64(55_000_000), np.float64(0.9e-5)], [np.int64(60_000_000), np.float64(0.9e-5)]]
'''),
    "seed chart with every breakpoint read up to 1M off": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (3_000_000, 5e-5), (44_000_000, 5e-5), (49_200_000, 4.6e-5), (49_200_000, 2.75e-5),
                  (55_800_000, 2.6e-5), (55_800_000, 0.9e-5), (60_000_000, 0.9e-5)]
'''),
    "seed chart as a tuple built in a loop": ("seed000_points", '''
_m = 1_000_000
SEED000_POINTS = tuple((int(m * _m), lr) for m, lr in [(0, 0.0), (2, 5e-5), (45, 5e-5), (50, 4.5e-5), (50, 2.7e-5),
                                                        (55, 2.6e-5), (55, 9e-6), (60, 9e-6)])
'''),
    # 9 multiple choice, read forgivingly
    "9a lower case with a space": ("mc_batch_change", 'ANSWER_BATCH_CHANGE = "b "'),
    "9a with a trailing period": ("mc_batch_change", 'ANSWER_BATCH_CHANGE = "B."'),
    "9a in parentheses": ("mc_batch_change", 'ANSWER_BATCH_CHANGE = " (b)"'),
    "9a with the option's text": ("mc_batch_change", 'ANSWER_BATCH_CHANGE = "B. The run stops at step 7,500"'),
    "9b single quotes": ("mc_past_tmax", "ANSWER_PAST_TMAX = 'C'"),
    "9b lower case with a period": ("mc_past_tmax", 'ANSWER_PAST_TMAX = "c."'),
    "9b as 'Option C'": ("mc_past_tmax", 'ANSWER_PAST_TMAX = "Option C"'),
    "9b as 'answer: c'": ("mc_past_tmax", 'ANSWER_PAST_TMAX = "answer: c"'),
}


@pytest.mark.parametrize("variant", sorted(CORRECT))
def test_other_correct_answers_get_full_marks(variant):
    grade_id, src = CORRECT[variant]
    report = _run({grade_id: src}, stop_after=f"{grade_id}_tests")
    assert_full_marks(report)
    assert_no_stderr(report)


@pytest.mark.parametrize("pick", [0, 1, 2, 3])
def test_correct_answers_together_get_full_marks_in_every_cell(pick):
    """The pick-th correct variant of every exercise at once: full marks, and every demo cell runs."""
    chosen = {}
    for grade_id, src in CORRECT.values():
        chosen.setdefault(grade_id, []).append(src)
    report = _run({g: srcs[pick % len(srcs)] for g, srcs in chosen.items()})
    assert_full_marks(report, POINTS)
    assert_no_stderr(report)


def _wsd(start="total - decay", p="min(1.0, (t - start) / decay)", sqrt="1 - math.sqrt(p)", shape="shape",
         ret="floor + (lr - floor) * s"):
    return f'''
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


# name -> (grade_id, source, the hint's words the failing visible test must show, or None where only the hidden
# tests can catch it). Every common mistake is caught by the visible tests alone, with a hint that names it.
MISTAKES = {
    # 1 warmup
    "warmup gives LR 0 at the first step": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return peak * t / warmup if t < warmup else peak
''', "Hugging Face's warmup from 0"),
    "warmup reaches the peak one step late": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return peak * (t + 1) / (warmup + 1) if t < warmup else peak
''', "divides by warmup + 1"),
    "warmup ramp goes on past the peak (t <= warmup)": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return peak * (t + 1) / warmup if t <= warmup else peak
''', "must not go on past it"),
    "no warmup at all": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return peak
''', "the LR climbs"),
    "warmup hard-codes the visible example": ("linear_warmup", '''
def linear_warmup(t, peak, warmup):
    return [0.025, 0.05, 0.075][t] if t < 3 else 0.1
''', None),
    # 2 step decay
    "step decay one step early": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * gamma ** ((t + 1) // step_size)
''', "one step early"),
    "step decay one block late": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * gamma ** max(0, (t - 1) // step_size)
''', "one step late"),
    "step decay is smooth (exponential)": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * gamma ** (t / step_size)
''', "smooth exponential decay"),
    "step decay multiplies by gamma * k instead of gamma ** k": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * gamma * (t // step_size)
''', "the decay is a power"),
    "step decay applies gamma only once": ("step_decay", '''
def step_decay(t, lr, step_size, gamma):
    return lr * gamma if t >= step_size else lr
''', "a staircase"),
    # 3 cosine
    "cosine climbs after its end": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return floor + (lr - floor) * (1 + math.cos(math.pi * t / total)) / 2
''', "climbing back up"),
    "cosine ignores the floor": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return lr * (1 + math.cos(math.pi * min(t, total) / total)) / 2
''', "decays to 0"),
    "cosine adds the floor on top": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return floor + lr * (1 + math.cos(math.pi * min(t, total) / total)) / 2
''', "adds the floor on top"),
    "cosine clamps to the floor with max (still climbs)": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return max(floor, floor + (lr - floor) * (1 + math.cos(math.pi * t / total)) / 2)
''', "climbing back up"),
    "cosine drops to 0 after its end": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    if t > total:
        return 0.0
    return floor + (lr - floor) * (1 + math.cos(math.pi * t / total)) / 2
''', "not at 0"),
    "cosine without (1 + cos) / 2": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return floor + (lr - floor) * math.cos(math.pi * min(t, total) / (2 * total))
''', "(1 + cos) / 2"),
    "cosine runs the wrong way (1 - cos)": ("cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return floor + (lr - floor) * (1 - math.cos(math.pi * min(t, total) / total)) / 2
''', "starts at the floor"),
    # 4 WSD
    "WSD decay starts one step early": ("wsd", _wsd(start="total - decay - 1"), "one step early"),
    "WSD decay starts right after the warmup": ("wsd", _wsd(start="warmup"), "not right after the warmup"),
    "WSD decay measured from the end of the stable phase plus warmup": (
        "wsd", _wsd(start="total - decay + warmup"), "still lr at 90"),
    "WSD ignores the floor": ("wsd", _wsd(ret="lr * s"), "decays to 0"),
    "WSD decay does not stop at total": ("wsd", _wsd(p="(t - start) / decay", sqrt="1 - math.sqrt(min(p, 1))"),
                                         "clamp p to 1"),
    "WSD 1-sqrt written as sqrt(1 - p)": ("wsd", _wsd(sqrt="math.sqrt(1 - p)"), "that is sqrt(1 - p)"),
    "WSD ignores the shape": ("wsd", _wsd(shape='"linear"'), "use the `shape` argument"),
    "WSD warmup gives LR 0 at the first step": (
        "wsd", _wsd().replace("lr * (t + 1) / warmup", "lr * t / warmup"), "lr * t / warmup"),
    "WSD cosine shape without (1 + cos) / 2": (
        "wsd", _wsd().replace("(1 + math.cos(math.pi * p)) / 2", "math.cos(math.pi * p)"), "not cos(pi p)"),
    "WSD drops to 0 after total": (
        "wsd", _wsd().replace("    start = total", "    if t >= total:\n        return 0.0\n    start = total"),
        "not at 0"),
    # 5 conversions: steps confused with samples, rounding, floats
    "samples_to_steps multiplies (steps confused with samples)": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    return samples * batch_size
''', "steps and samples swapped"),
    "steps_to_samples divides (steps confused with samples)": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps // batch_size

def samples_to_steps(samples, batch_size):
    return -(-samples // batch_size)
''', "steps and samples swapped"),
    "samples_to_steps rounds down": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    return samples // batch_size
''', "round UP, not down"),
    "samples_to_steps returns a float": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    return math.ceil(samples / batch_size) * 1.0
''', "return an int"),
    "samples_to_steps with float division (wrong beyond 2**53)": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    return math.ceil(samples / batch_size)
''', "integer arithmetic"),
    "steps_to_samples returns a float": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return float(steps * batch_size)

def samples_to_steps(samples, batch_size):
    return -(-samples // batch_size)
''', "return a Python int"),
    "samples_to_steps rounds to the nearest": ("conversions", '''
def steps_to_samples(steps, batch_size):
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    return round(samples / batch_size)
''', "round UP, not down"),
    # 6 the LRs of a run
    "lrs_for_run uses the step index (steps confused with samples)": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    return [schedule(k) for k in range(len(batch_sizes))]
''', "the step index"),
    "lrs_for_run uses the samples after the step": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    out, seen = [], 0
    for b in batch_sizes:
        seen += b
        out.append(schedule(seen))
    return out
''', "AFTER each step"),
    "lrs_for_run assumes a fixed batch size": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    return [schedule(k * batch_sizes[0]) for k in range(len(batch_sizes))]
''', "add up the actual sizes"),
    "lrs_for_run returns one LR too many (the cumulative sum with the end)": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    return [schedule(int(n)) for n in np.cumsum([0] + list(batch_sizes))]
''', "one LR per step"),
    "lrs_for_run returns a lazy map": ("lrs_for_run", '''
def lrs_for_run(schedule, batch_sizes):
    return map(schedule, itertools.accumulate([0] + batch_sizes[:-1]))
''', "collect the LRs in a list"),
    # 7a piecewise
    "piecewise takes the first point at a jump": ("piecewise_lr", '''
def piecewise_lr(t, points):
    for (t0, lr0), (t1, lr1) in itertools.pairwise(points):
        if t0 <= t <= t1:
            return lr0 if t1 == t0 else lr0 + (lr1 - lr0) * (t - t0) / (t1 - t0)
    return points[-1][1]
''', "at a jump return the second one"),
    "piecewise is a staircase": ("piecewise_lr", '''
def piecewise_lr(t, points):
    lr = points[0][1]
    for t0, lr0 in points:
        if t >= t0:
            lr = lr0
    return lr
''', "a staircase"),
    "piecewise extrapolates after the last point": ("piecewise_lr", '''
def piecewise_lr(t, points):
    for (t0, lr0), (t1, lr1) in itertools.pairwise(points):
        if t0 <= t < t1:
            return lr0 + (lr1 - lr0) * (t - t0) / (t1 - t0)
    (t0, lr0), (t1, lr1) = points[-2], points[-1]
    return lr1 + (lr1 - lr0) * (t - t1) / (t1 - t0) if t1 > t0 else lr1
''', "do not extend the last line"),
    "piecewise after a jump interpolates from the first point": ("piecewise_lr", '''
def piecewise_lr(t, points):
    for i in range(len(points) - 1):
        (t0, lr0), (t1, lr1) = points[i], points[i + 1]
        if t0 == t1:
            continue
        if t0 <= t < t1:
            a = points[i - 1][1] if i > 0 and points[i - 1][0] == t0 else lr0   # the first point at a jump
            return a + (lr1 - a) * (t - t0) / (t1 - t0)
    return points[-1][1]
''', "at a jump return the second one"),
    "piecewise drops to 0 after the last point": ("piecewise_lr", '''
def piecewise_lr(t, points):
    for (t0, lr0), (t1, lr1) in itertools.pairwise(points):
        if t0 <= t < t1:
            return lr0 + (lr1 - lr0) * (t - t0) / (t1 - t0)
    return 0.0
''', "do not drop to 0"),
    # 7b the seed chart
    "seed chart without the warmup": ("seed000_points", '''
SEED000_POINTS = [(0, 5e-5), (45_000_000, 5e-5), (50_000_000, 4.5e-5), (50_000_000, 2.7e-5),
                  (55_000_000, 2.6e-5), (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
''', "the warmup starts from 0"),
    "seed chart with the first drop at 45M": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (45_000_000, 2.7e-5),
                  (55_000_000, 2.6e-5), (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
''', None),
    "seed chart in millions, not samples": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2, 5e-5), (45, 5e-5), (50, 4.5e-5), (50, 2.7e-5), (55, 2.6e-5), (55, 0.9e-5),
                  (60, 0.9e-5)]
''', "samples on the x axis"),
    "seed chart with the peak at 5e-4": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-4), (45_000_000, 5e-4), (50_000_000, 4.5e-4), (50_000_000, 2.7e-4),
                  (55_000_000, 2.6e-4), (55_000_000, 0.9e-4), (60_000_000, 0.9e-4)]
''', "the plateau is at 5e-5"),
    "seed chart that skips the slight decays": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (50_000_000, 5e-5), (50_000_000, 2.7e-5), (55_000_000, 2.7e-5),
                  (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
''', None),
    "seed chart with the last step read as 9e-5": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (50_000_000, 4.5e-5), (50_000_000, 2.7e-5),
                  (55_000_000, 2.6e-5), (55_000_000, 9e-5), (60_000_000, 9e-5)]
''', "steps down again"),
    "seed chart with the points out of order": ("seed000_points", '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (50_000_000, 2.7e-5), (50_000_000, 4.5e-5),
                  (60_000_000, 0.9e-5), (55_000_000, 2.6e-5), (55_000_000, 0.9e-5)]
''', "never decrease"),
    # 9 multiple choice
    "9a: the LR follows the samples": ("mc_batch_change", 'ANSWER_BATCH_CHANGE = "A"', None),
    "9a: stops at step 10,000": ("mc_batch_change", 'ANSWER_BATCH_CHANGE = "D"', None),
    "9a: two letters": ("mc_batch_change", 'ANSWER_BATCH_CHANGE = "B or C"', "single letter"),
    "9b: stays at eta_min": ("mc_past_tmax", 'ANSWER_PAST_TMAX = "A"', None),
    "9b: restarts at step 101": ("mc_past_tmax", 'ANSWER_PAST_TMAX = "d."', None),
    "9b: not answered": ("mc_past_tmax", "ANSWER_PAST_TMAX = None", "no answer yet"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src, _ = MISTAKES[mistake]
    report = _run({grade_id: src}, stop_after=f"{grade_id}_tests")
    assert_caught(report, grade_id, mistake)


@pytest.mark.parametrize("mistake", sorted(m for m, (_, _, hint) in MISTAKES.items() if hint))
def test_the_visible_tests_catch_a_common_mistake_with_a_hint_that_names_it(mistake):
    grade_id, src, hint = MISTAKES[mistake]
    report = _run({grade_id: src, f"{grade_id}_tests": _visible_only(grade_id)}, stop_after=f"{grade_id}_tests")
    assert f"{grade_id}_tests" in report.failed(), f"{mistake!r} passed the visible tests:\n{report.summary()}"
    assert hint in report.tests[f"{grade_id}_tests"].error, report.summary()


@pytest.mark.parametrize("answer_cell, src", [("mc_batch_change", 'ANSWER_BATCH_CHANGE = "A"'),
                                              ("mc_past_tmax", 'ANSWER_PAST_TMAX = "B"')])
def test_one_wrong_letter_costs_one_point_only(answer_cell, src):
    report = _run({answer_cell: src})
    assert report.failed() == [f"{answer_cell}_tests"], report.summary()
    assert report.score == POINTS - 1, report.summary()


# One call into lrlab.schedules, by any route, in place of the learner's own work: 0 with "write it yourself".
# name -> (grade_id, the name the message asks to write, source)
SHORTCUTS = {
    "warmup through `import lrlab.schedules as`": ("linear_warmup", "linear_warmup", '''
import lrlab.schedules as LS

def linear_warmup(t, peak, warmup):
    return LS.Warmup(LS.Constant(peak), warmup)(t)
'''),
    "step decay through `from lrlab.schedules import ... as`": ("step_decay", "step_decay", '''
from lrlab.schedules import StepDecay as _Steps

def step_decay(t, lr, step_size, gamma):
    return _Steps(lr, step_size, gamma)(t)
'''),
    "cosine through importlib": ("cosine_with_floor", "cosine_with_floor", '''
import importlib

def cosine_with_floor(t, lr, total, floor=0.0):
    return importlib.import_module("lrlab.schedules").Cosine(lr, total, floor)(t)
'''),
    "cosine returning lrlab's schedule object": ("cosine_with_floor", "cosine_with_floor", '''
def cosine_with_floor(t, lr, total, floor=0.0):
    return S.Cosine(lr, total, floor)
'''),
    "WSD through a helper that calls lrlab": ("wsd", "wsd", '''
def _decay_phase(t, lr, total, decay, floor, shape):
    import lrlab
    return lrlab.schedules.WSD(lr, total, 0, decay, floor, shape)(t)

def wsd(t, lr, total, warmup, decay, floor=0.0, shape="linear"):
    if t < warmup:
        return lr * (t + 1) / warmup
    return _decay_phase(t, lr, total, decay, floor, shape)
'''),
    "samples_to_steps through the notebook's alias S": ("conversions", "samples_to_steps", '''
def steps_to_samples(steps, batch_size):
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    return S.samples_to_steps(samples, batch_size)
'''),
    "lrs_for_run through lr_trajectory": ("lrs_for_run", "lrs_for_run", '''
from lrlab.schedules import lr_trajectory

def lrs_for_run(schedule, batch_sizes):
    return list(lr_trajectory(schedule, batch_sizes)[1])
'''),
    "lrs_for_run returning values that call lrlab when read": ("lrs_for_run", "lrs_for_run", '''
class _LR:
    def __init__(self, schedule, sizes, k):
        self.args = schedule, sizes, k

    def __float__(self):
        schedule, sizes, k = self.args
        return float(S.lr_trajectory(schedule, sizes)[1][k])

def lrs_for_run(schedule, batch_sizes):
    return [_LR(schedule, batch_sizes, k) for k in range(len(batch_sizes))]
'''),
    "piecewise returning lrlab's Piecewise": ("piecewise_lr", "piecewise_lr", '''
import functools

@functools.lru_cache
def _schedule(points):
    return S.Piecewise(points)

def piecewise_lr(t, points):
    return _schedule(tuple(map(tuple, points)))(t)
'''),
    "seed chart copied from lrlab's schedule": ("seed000_points", "SEED000_POINTS", '''
SEED000_POINTS = list(S.seed000_schedule().points)
'''),
    "seed chart copied through `from lrlab.schedules import ... as`": ("seed000_points", "SEED000_POINTS", '''
from lrlab.schedules import SEED000_POINTS as _chart

SEED000_POINTS = [(t, lr) for t, lr in _chart]
'''),
}


@pytest.mark.parametrize("shortcut", sorted(SHORTCUTS))
def test_a_shortcut_into_lrlab_scores_zero_and_says_write_it_yourself(shortcut):
    grade_id, name, src = SHORTCUTS[shortcut]
    report = _run({grade_id: src}, stop_after=f"{grade_id}_tests")
    assert_shortcut_caught(report, grade_id, name)
    assert "lrlab.schedules" in report.tests[f"{grade_id}_tests"].error, report.summary()


def test_the_visible_tests_already_catch_a_shortcut():
    picks = {"wsd": "WSD through a helper that calls lrlab", "lrs_for_run": "lrs_for_run through lr_trajectory",
             "seed000_points": "seed chart copied from lrlab's schedule"}
    for grade_id, shortcut in picks.items():
        _, name, src = SHORTCUTS[shortcut]
        report = _run({grade_id: src, f"{grade_id}_tests": _visible_only(grade_id)}, stop_after=f"{grade_id}_tests")
        assert_shortcut_caught(report, grade_id, name)


def test_an_answer_cell_that_rebinds_checks_or_the_reference_gains_nothing():
    fake = '''
class _Anything:
    def __getattr__(self, name):
        return lambda *a, **k: (lambda *a, **k: 0.0)

checks = S = np = torch = math = _Anything()
'''
    for grade_id, src in [("linear_warmup", "def linear_warmup(t, peak, warmup):\n    return 0.0"),
                          ("mc_batch_change", 'ANSWER_BATCH_CHANGE = "A"')]:
        report = _run({grade_id: fake + src}, stop_after=f"{grade_id}_tests")
        assert_caught(report, grade_id, "rebinding the names the tests use")


# Honest answers that warn (a UserWarning, a DeprecationWarning, numpy's RuntimeWarnings) or print to stderr: full
# marks, and no test cell writes to stderr.
WARNS = {
    "linear_warmup": '''
import warnings

def linear_warmup(t, peak, warmup):
    warnings.warn("ramping the LR linearly", UserWarning)
    return peak * min(1.0, (t + 1) / warmup)
''',
    "step_decay": '''
import warnings

def step_decay(t, lr, step_size, gamma):
    warnings.warn("step_decay: consider a cosine", DeprecationWarning)
    return lr * gamma ** (t // step_size)
''',
    "cosine_with_floor": '''
import warnings

def cosine_with_floor(t, lr, total, floor=0.0):
    if t > total:
        warnings.warn("past the end of the cosine: holding the floor", FutureWarning)
        t = total
    return floor + (lr - floor) * (1 + math.cos(math.pi * t / total)) / 2
''',
    "wsd": '''
def wsd(t, lr, total, warmup, decay, floor=0.0, shape="linear"):
    if t < warmup:
        return lr * (t + 1) / warmup
    p = np.minimum((t - (total - decay)) / np.float64(decay), 1.0)   # negative before the decay
    shapes = {"linear": 1 - p, "cosine": (1 + np.cos(np.pi * p)) / 2, "1-sqrt": 1 - np.sqrt(p)}  # sqrt(<0) warns
    if p < 0:
        return lr
    return float(floor + (lr - floor) * shapes[shape])
''',
    "conversions": '''
import sys
import warnings

def steps_to_samples(steps, batch_size):
    print(f"{steps} steps of {batch_size}", file=sys.stderr)   # a note on stderr, in a kernel too
    return steps * batch_size

def samples_to_steps(samples, batch_size):
    if samples % batch_size:
        warnings.warn("the last batch is a partial one", UserWarning)
    return -(-samples // batch_size)
''',
    "lrs_for_run": '''
import warnings

def lrs_for_run(schedule, batch_sizes):
    if len(set(batch_sizes)) > 1:
        warnings.warn("the batch size changes during the run", RuntimeWarning)
    lrs, seen = [], 0
    for b in batch_sizes:
        lrs.append(schedule(seen))
        seen += b
    return lrs
''',
    "piecewise_lr": '''
def piecewise_lr(t, points):
    ts = np.array([p[0] for p in points], dtype=float)
    lrs = np.array([p[1] for p in points], dtype=float)
    slopes = np.diff(lrs) / np.diff(ts)   # inf or nan at a jump: numpy warns, the slope there is never used
    i = int(np.searchsorted(ts, t, side="right")) - 1
    if i >= len(points) - 1:
        return float(lrs[-1])
    return float(lrs[i] + slopes[i] * (t - ts[i]))
''',
    "seed000_points": '''
import warnings

warnings.warn("read off the chart by eye")
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (50_000_000, 4.5e-5), (50_000_000, 2.7e-5),
                  (55_000_000, 2.6e-5), (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
''',
    "mc_batch_change": 'import warnings\nwarnings.warn("not sure about this one")\nANSWER_BATCH_CHANGE = "B"',
    "mc_past_tmax": 'import warnings\nwarnings.warn("checked it with PyTorch")\nANSWER_PAST_TMAX = "C"',
}


def test_honest_answers_that_warn_keep_full_marks():
    report = _run(WARNS)
    assert_full_marks(report, POINTS)
    assert_no_stderr(report)
    for grade_id in ("linear_warmup", "step_decay", "cosine_with_floor", "wsd", "conversions", "lrs_for_run",
                     "piecewise_lr"):  # each warned inside its test cell (shown on stdout, not stderr)
        printed = "".join(o.get("text", "") for o in report.outputs[f"{grade_id}_tests"])
        assert "Warning" in printed, (grade_id, printed)


@pytest.mark.slow
def test_in_a_real_kernel_warnings_cost_nothing_and_a_shortcut_still_scores_zero():
    """The in-process harness imitates a kernel; this runs one: IPython shows warnings its own way, and code on that
    path must not read as a call into lrlab (naming dataclasses in FORBID once made it do so)."""
    import copy
    import logging

    from nbclient import NotebookClient
    from nbgrader.utils import determine_grade

    from nbharness import ROOT, source_notebook

    replace = dict(WARNS, cosine_with_floor=SHORTCUTS["cosine through importlib"][2])
    nb = copy.deepcopy(source_notebook(A))
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        cell.source = replace.get(grade_id, cell.source)
        if "parameters" in cell.metadata.get("tags", []):
            cell.source += "\nN_EPOCHS = 1"
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(ROOT / "source" / A)}}).execute()
    scores, errors = {}, {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and cell.cell_type == "code":
            scores[meta["grade_id"]] = determine_grade(cell, logging.getLogger(__name__))[0]
            errors[meta["grade_id"]] = [o for o in cell.outputs
                                        if o.output_type == "error" or o.get("name") == "stderr"]
    assert scores.pop("cosine_with_floor_tests") == 0, errors["cosine_with_floor_tests"]
    assert "ShortcutUsed" in str(errors.pop("cosine_with_floor_tests"))
    assert sum(scores.values()) == POINTS - 3 and not any(errors.values()), (scores, errors)


def test_seed_chart_with_a_drop_half_a_million_samples_late_still_passes():
    late = '''
SEED000_POINTS = [(0, 0.0), (2_000_000, 5e-5), (45_000_000, 5e-5), (50_500_000, 4.45e-5), (50_500_000, 2.7e-5),
                  (55_000_000, 2.6e-5), (55_000_000, 0.9e-5), (60_000_000, 0.9e-5)]
'''
    report = _run({"seed000_points": late}, stop_after="seed000_points_tests")
    assert "seed000_points_tests" not in report.failed(), report.summary()


def test_the_seed_chart_is_scored_on_its_own_even_when_piecewise_lr_is_wrong():
    staircase = MISTAKES["piecewise is a staircase"][1]
    report = _run({"piecewise_lr": staircase}, stop_after="seed000_points_tests")
    assert report.failed() == ["piecewise_lr_tests"], report.summary()


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
    report = _run({"seed000_points": MISSED_DROPS[chart], "seed000_points_tests": _visible_only("seed000_points")},
                  stop_after="seed000_points_tests")
    assert "seed000_points_tests" in report.failed(), f"{chart!r} passed the visible tests:\n{report.summary()}"
