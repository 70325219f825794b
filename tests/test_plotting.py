"""lrlab.plotting: the schedule plots draw what the schedules say, with readable ticks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lrlab import plotting as P  # noqa: E402
from lrlab import schedules as S  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("x, text", [(0, "0"), (500, "500"), (12_000, "12K"), (2_500_000, "2.5M"),
                                     (60_000_000, "60M"), (1_200_000_000, "1.2B"), (-3_000_000, "-3M")])
def test_format_count(x, text):
    assert P.format_count(x) == text


@pytest.mark.parametrize("y, text", [(0, "0"), (1e-5, "1e-5"), (2.5e-5, "2.5e-5"), (5e-5, "5e-5"),
                                     (1e-3, "1e-3"), (8e-4, "8e-4"), (0.02, "0.02"), (0.1, "0.1"),
                                     (9.9996e-5, "1e-4")])
def test_format_lr(y, text):
    assert P.format_lr(y) == text


def test_seed000_chart_is_drawn_in_samples_with_m_ticks():
    ax = P.plot_schedule(S.seed000_schedule())
    (line,) = ax.lines
    x, y = line.get_xdata(), line.get_ydata()
    assert x[0] == 0 and x[-1] == 60_000_000 and ax.get_xlim() == (0, 60_000_000)
    np.testing.assert_array_equal(y, S.seed000_schedule().values(x))
    assert y.max() == 5e-5 and y[-1] == pytest.approx(0.9e-5)
    ax.figure.canvas.draw()
    xticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert {"0", "10M", "20M", "30M", "40M", "50M", "60M"} <= set(xticks)
    yticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert {"0", "1e-5", "5e-5"} <= set(yticks)
    assert ax.get_xlabel() == "sample" and ax.get_title() == "Learning rate"
    assert ax.get_legend() is None


def test_several_named_schedules_get_a_legend_and_their_own_values():
    named = {"cosine": S.Cosine(0.1, 200), "WSD": S.WSD(0.1, 300, 20, 60), "step": S.StepDecay(0.1, 50)}
    fig, ax = plt.subplots()
    assert P.plot_schedule(named, ax=ax) is ax
    assert [ln.get_label() for ln in ax.lines] == list(named)
    assert ax.get_xlim() == (0, 300)  # the longest horizon
    for line, sched in zip(ax.lines, named.values(), strict=True):
        np.testing.assert_array_equal(line.get_ydata(), sched.values(line.get_xdata()))
        assert line.get_drawstyle() == "steps-post"  # 300 steps: one value per step, drawn as stairs
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(named)


def test_list_of_schedules_uses_their_labels_and_makes_them_unique():
    ax = P.plot_schedule([S.Cosine(0.1, 100), S.Cosine(0.05, 100)], total=150)
    assert [ln.get_label() for ln in ax.lines] == ["cosine", "cosine (2)"]


def test_long_step_runs_are_sampled_and_get_k_ticks():
    ax = P.plot_schedule(S.Cosine(0.1, 50_000), points=500)
    (line,) = ax.lines
    assert len(line.get_xdata()) == 501 and line.get_drawstyle() == "default"
    ax.figure.canvas.draw()
    assert any(t.get_text().endswith("K") for t in ax.get_xticklabels())


def test_a_plain_function_can_be_plotted_in_samples():
    ax = P.plot_schedule({"mine": lambda n: 1e-4 * min(1.0, n / 2e6), "lrlab": S.seed000_schedule()},
                         total=60_000_000, unit="sample")
    assert ax.get_xlabel() == "sample" and len(ax.lines) == 2
    assert P.plot_schedule(lambda t: 0.1, total=10).get_xlabel() == "step"


def test_plain_functions_and_log_scale():
    ax = P.plot_schedule(lambda t: 0.1 * 0.99**t, total=100, logy=True, title=None)
    assert ax.get_yscale() == "log" and ax.get_title() == ""
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 0.1 * 0.99 ** np.arange(101))


@pytest.mark.parametrize("call, message", [
    (lambda: P.plot_schedule(S.Constant(0.1)), "total is needed"),
    (lambda: P.plot_schedule({}), "empty"),
    (lambda: P.plot_schedule(42), "must be a schedule"),
    (lambda: P.plot_schedule({"a": S.Cosine(0.1, 10), "b": S.seed000_schedule()}), "different units"),
    (lambda: P.plot_schedule(S.Cosine(0.1, 10), unit="sample"), "convert with"),
    (lambda: P.plot_schedule(S.Cosine(0.1, 10), unit="epoch"), "unit must be"),
    (lambda: P.plot_schedule(S.Cosine(0.1, 10), total=-5), "total must be a finite number > 0"),
    (lambda: P.plot_schedule({"x": 3}), "must be callable"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_lr_trajectory_plot_puts_every_run_on_a_sample_indexed_curve():
    sched = S.WSD(1e-3, 32_000, 3_200, 9_600, unit="sample")
    runs = {"batch 32": [32] * 1000, "batch 128": [128] * 250, "32 then 128": [32] * 500 + [128] * 125}
    ax = P.plot_lr_trajectory(sched, runs)
    labels = [ln.get_label() for ln in ax.lines]
    assert labels == [*runs, "schedule"]
    for line in ax.lines[:3]:
        np.testing.assert_array_equal(line.get_ydata(), sched.values(line.get_xdata()))
    with pytest.raises(ValueError, match="runs must be a non-empty dict"):
        P.plot_lr_trajectory(sched, {})


def test_lr_trajectory_plot_of_a_step_schedule_shows_runs_apart():
    sched = S.Cosine(1e-3, 1000)
    ax = P.plot_lr_trajectory(sched, {"batch 32": [32] * 1000, "batch 128": [128] * 250})
    small, big = ax.lines[:2]
    assert len(ax.lines) == 2  # no single curve to draw in samples for a step-indexed schedule
    assert big.get_ydata()[-1] > small.get_ydata()[-1] * 100
