"""lrlab.widgets.schedule_explorer: controls rebuild per strategy, every change redraws, errors show."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as W  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lrlab import schedules as S  # noqa: E402
from lrlab import widgets as LW  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def explorer():
    return LW.schedule_explorer("cosine")


def test_it_is_a_widget_showing_dropdown_controls_and_a_png(explorer):
    assert isinstance(explorer, W.VBox)
    assert explorer.dropdown.options == tuple(LW.SCHEDULE_PRESETS)
    assert explorer.strategy == "cosine"
    assert set(explorer.controls) == {"lr", "total", "floor_frac"}
    assert list(explorer.controls_box.children) == list(explorer.controls.values())
    assert bytes(explorer.image.value).startswith(PNG)
    assert explorer.schedule == S.Cosine(0.1, 1000, 0.0)
    assert "Cosine(lr=0.1, total=1000" in explorer.code.value


def test_moving_a_slider_redraws_the_curve(explorer):
    explorer.strategy = "cosine"
    x0, y0 = explorer.curve()
    png0, n0 = explorer.image.value, explorer.redraws
    explorer.controls["floor_frac"].value = 0.2
    x1, y1 = explorer.curve()
    assert explorer.redraws == n0 + 1 and bytes(explorer.image.value) != bytes(png0)
    np.testing.assert_array_equal(x0, x1)
    assert not np.array_equal(y0, y1) and y1.min() == pytest.approx(0.02)
    np.testing.assert_allclose(y1, S.Cosine(0.1, 1000, 0.02).values(x1))
    explorer.controls["total"].value = 2000
    x2, _ = explorer.curve()
    assert x2[-1] == 2000 and explorer.schedule.total == 2000


def test_switching_strategy_rebuilds_the_controls_and_keeps_shared_values(explorer):
    explorer.strategy = "cosine"
    explorer.set(lr=0.05, total=1500)
    explorer.strategy = "WSD"
    assert set(explorer.controls) == {"lr", "total", "warmup", "decay", "floor_frac", "shape"}
    assert explorer.controls["lr"].value == pytest.approx(0.05) and explorer.controls["total"].value == 1500
    assert isinstance(explorer.schedule, S.WSD)
    _, y_lin = explorer.curve()
    explorer.controls["shape"].value = "1-sqrt"
    _, y_sqrt = explorer.curve()
    assert explorer.schedule.shape == "1-sqrt" and not np.array_equal(y_lin, y_sqrt)


@pytest.mark.parametrize("name", list(LW.SCHEDULE_PRESETS))
def test_every_strategy_draws_with_its_defaults(name):
    ex = LW.schedule_explorer(name)
    x, y = ex.curve()
    assert ex.error == "" and isinstance(ex.schedule, S.Schedule)
    assert len(x) == len(y) > 10 and np.all(np.isfinite(y)) and y.max() > 0
    np.testing.assert_allclose(y, ex.schedule.values(x))


def test_seed_strategy_is_sample_indexed(explorer):
    explorer.strategy = "seed 000 (samples)"
    x, y = explorer.curve()
    assert explorer.schedule.unit == "sample" and x[-1] == S.SEED000_TOTAL
    assert y.max() == pytest.approx(5e-5)
    explorer.controls["peak"].value = 1e-4
    assert explorer.curve()[1].max() == pytest.approx(1e-4)


def test_an_invalid_setting_shows_why_and_keeps_the_last_curve(explorer):
    explorer.strategy = "WSD"
    explorer.set(total=1000, warmup=100, decay=200)
    x0, y0 = explorer.curve()
    explorer.controls["warmup"].value = 900
    assert "warmup (900) + decay (200) must be <= total (1000)" in explorer.error
    assert "must be &lt;= total" in explorer.message.value
    np.testing.assert_array_equal(explorer.curve()[1], y0)
    explorer.controls["warmup"].value = 100
    assert explorer.error == "" and explorer.message.value == ""


def test_log_scale_checkbox(explorer):
    explorer.strategy = "exponential"
    explorer.logy.value = True
    assert explorer.ax.get_yscale() == "log"
    explorer.logy.value = False
    assert explorer.ax.get_yscale() == "linear"


def test_bad_arguments():
    with pytest.raises(ValueError, match="strategy must be one of"):
        LW.schedule_explorer("sawtooth")
    ex = LW.schedule_explorer("constant")
    with pytest.raises(ValueError, match="strategy must be one of"):
        ex.strategy = "nope"
    with pytest.raises(ValueError, match=r"has no control\(s\) \['gamma'\]"):
        ex.set(gamma=0.5)
