"""Interactive widgets of the course (ipywidgets).

:func:`schedule_explorer` shows one LR strategy at a time: pick it in the dropdown, drag its sliders,
and the curve redraws. The plot is a PNG drawn by matplotlib (no interactive backend needed), so the
widget works the same in JupyterLab, in VS Code and in a headless run (papermill, nbgrader).

Everything the widget shows is also available as plain Python, for tests and for the curious::

    ex = schedule_explorer("cosine")
    ex.controls["lr"].value = 0.05      # what dragging the slider does
    ex.schedule                          # Cosine(lr=0.05, total=1000, floor=0.0)
    x, y = ex.curve()                    # the plotted points

imports: args, schedules, plotting.
"""

from __future__ import annotations

import contextlib
import html
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W
import numpy as np

from lrlab import schedules as S
from lrlab.args import check_int
from lrlab.plotting import plot_schedule, schedule_grid


# ---------------------------------------------------------------------------------- strategy specs
@dataclass(frozen=True)
class Param:
    """One control of a strategy: ``kind`` is "log" (log-scale slider; min/max are powers of 10),
    "float", "int", "choice" (a dropdown of ``options``) or "bool" (a checkbox)."""

    name: str
    kind: str
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: tuple = ()
    description: str | None = None

    def widget(self, value: Any = None) -> W.ValueWidget:
        value = self.default if value is None else value
        desc = self.description or self.name
        common = {"description": desc, "style": {"description_width": "9em"}, "layout": W.Layout(width="26em")}
        if self.kind == "log":
            return W.FloatLogSlider(value=value, base=10, min=self.min, max=self.max, step=self.step or 0.05,
                                    readout_format=".2e", continuous_update=False, **common)
        if self.kind == "float":
            return W.FloatSlider(value=value, min=self.min, max=self.max, step=self.step or 0.01,
                                 readout_format=".3g", continuous_update=False, **common)
        if self.kind == "int":
            return W.IntSlider(value=value, min=self.min, max=self.max, step=self.step or 1,
                               continuous_update=False, **common)
        if self.kind == "choice":
            return W.Dropdown(value=value, options=list(self.options), **common)
        if self.kind == "bool":
            return W.Checkbox(value=bool(value), description=desc, indent=False)
        raise ValueError(f"Param kind must be log, float, int, choice or bool, got {self.kind!r}")

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (from another strategy's control of the same name) fits this control."""
        if self.kind == "choice":
            return value in self.options
        if self.kind == "bool":
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        lo, hi = (10**self.min, 10**self.max) if self.kind == "log" else (self.min, self.max)
        return lo <= value <= hi and (self.kind != "int" or float(value).is_integer())


@dataclass(frozen=True)
class SchedulePreset:
    """One entry of the explorer's dropdown: a named LR schedule, its controls and how to build it.

    (Not to be confused with :class:`lrlab.sweep.Strategy`, a recipe ``(peak_lr, budget) -> schedule``
    that the sweep trains with.)
    """

    name: str
    params: tuple[Param, ...]
    build: Callable[[Mapping[str, Any]], S.Schedule]
    note: str = ""
    total: Callable[[Mapping[str, Any]], float] | None = field(default=None)

    def plot_total(self, values: Mapping[str, Any], schedule: S.Schedule) -> float:
        if self.total is not None:
            return self.total(values)
        return values.get("total") or schedule.horizon or 1000


def _floor(v: Mapping[str, Any]) -> float:
    """The floor LR from the "floor (× lr)" slider, rounded so that reprs stay readable."""
    return float(f"{v['lr'] * v['floor_frac']:.6g}")


LR = Param("lr", "log", 0.1, -4, 0, description="lr (peak)")
TOTAL = Param("total", "int", 1000, 50, 5000, 50, description="total steps")
FLOOR = Param("floor_frac", "float", 0.0, 0.0, 0.5, 0.01, description="floor (× lr)")
WARMUP = Param("warmup", "int", 100, 0, 1000, 10, description="warmup steps")


def _warmup_cosine(v: Mapping[str, Any]) -> S.Schedule:
    if not 0 < v["warmup"] < v["total"]:
        raise ValueError(f"warmup ({v['warmup']}) must be > 0 and < total ({v['total']}) steps")
    return S.Warmup(S.Cosine(v["lr"], v["total"] - v["warmup"], _floor(v)), v["warmup"])


def _seed000(v: Mapping[str, Any]) -> S.Schedule:
    scale = v["peak"] / 5e-5
    return S.Piecewise([(t, lr * scale) for t, lr in S.SEED000_POINTS], unit="sample")


SCHEDULE_PRESETS: dict[str, SchedulePreset] = {s.name: s for s in [
    SchedulePreset("constant", (LR, TOTAL), lambda v: S.Constant(v["lr"])),
    SchedulePreset("step decay", (LR, TOTAL, Param("step_size", "int", 300, 10, 2000, 10, description="step size"),
                            Param("gamma", "float", 0.5, 0.05, 1.0, 0.05)),
             lambda v: S.StepDecay(v["lr"], v["step_size"], v["gamma"])),
    SchedulePreset("multistep", (LR, TOTAL, Param("first", "int", 500, 10, 5000, 10, description="1st milestone"),
                           Param("second", "int", 800, 10, 5000, 10, description="2nd milestone"),
                           Param("gamma", "float", 0.1, 0.05, 1.0, 0.05)),
             lambda v: S.MultiStep(v["lr"], [v["first"], v["second"]], v["gamma"])),
    SchedulePreset("exponential", (LR, TOTAL, Param("gamma", "float", 0.997, 0.99, 1.0, 0.0005)),
             lambda v: S.Exponential(v["lr"], v["gamma"])),
    SchedulePreset("polynomial", (LR, TOTAL, Param("power", "float", 2.0, 0.25, 4.0, 0.25), FLOOR),
             lambda v: S.Polynomial(v["lr"], v["total"], v["power"], _floor(v))),
    SchedulePreset("cosine", (LR, TOTAL, FLOOR), lambda v: S.Cosine(v["lr"], v["total"], _floor(v))),
    SchedulePreset("warmup + cosine", (LR, TOTAL, WARMUP, FLOOR), _warmup_cosine),
    SchedulePreset("cosine restarts", (LR, TOTAL, Param("period", "int", 100, 10, 2000, 10),
                                 Param("mult", "int", 2, 1, 3), FLOOR),
             lambda v: S.CosineRestarts(v["lr"], v["period"], v["mult"], _floor(v))),
    SchedulePreset("WSD", (LR, TOTAL, WARMUP, Param("decay", "int", 200, 10, 5000, 10, description="decay steps"),
                     FLOOR, Param("shape", "choice", "linear", options=S.WSD_SHAPES)),
             lambda v: S.WSD(v["lr"], v["total"], v["warmup"], v["decay"], _floor(v), v["shape"])),
    SchedulePreset("one-cycle", (LR, TOTAL, Param("pct_start", "float", 0.3, 0.05, 0.95, 0.05),
                           Param("anneal", "choice", "cos", options=S.ONE_CYCLE_ANNEALS),
                           Param("div_factor", "log", 25.0, 0, 3, description="div factor"),
                           Param("final_div_factor", "log", 1e4, 0, 6, description="final div factor"),
                           Param("three_phase", "bool", False, description="three phases")),
             lambda v: S.OneCycle(v["lr"], v["total"], v["pct_start"], v["anneal"], v["div_factor"],
                                  v["final_div_factor"], v["three_phase"])),
    SchedulePreset("cyclic", (Param("base_lr", "log", 0.01, -4, 0, description="base lr"),
                        Param("lr", "log", 0.1, -4, 0, description="max lr"), TOTAL,
                        Param("step_size_up", "int", 100, 5, 1000, 5, description="steps up"),
                        Param("mode", "choice", "triangular", options=S.CYCLIC_MODES),
                        Param("gamma", "float", 0.998, 0.99, 1.0, 0.0005, description="gamma (exp_range)")),
             lambda v: S.Cyclic(v["base_lr"], v["lr"], v["step_size_up"], mode=v["mode"], gamma=v["gamma"])),
    SchedulePreset("seed 000 (samples)", (Param("peak", "log", 5e-5, -6, -2, description="peak lr"),), _seed000,
             note="sample-indexed: the same curve whatever the batch size",
             total=lambda v: S.SEED000_TOTAL),
]}


# ----------------------------------------------------------------------------------------- the widget
class ScheduleExplorer(W.VBox):
    """The LR strategy explorer (see :func:`schedule_explorer`).

    Attributes a notebook or a test can use: ``strategy`` (name, settable), ``dropdown``, ``controls``
    (dict name -> slider / dropdown of the current strategy), ``values()``, ``set(**values)``,
    ``schedule`` (the lrlab schedule drawn, or None while the settings are invalid), ``error`` (why
    they are invalid, else ""), ``curve()`` (the plotted x and y), ``redraws`` (a counter), ``figure``,
    ``ax`` and ``image`` (the PNG widget shown).
    """

    def __init__(self, strategy: str = "warmup + cosine", *, presets: Mapping[str, SchedulePreset] | None = None,
                 points: int = 600, dpi: int = 80) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.presets = dict(SCHEDULE_PRESETS if presets is None else presets)
        if not self.presets:
            raise ValueError("presets must hold at least one SchedulePreset")
        if strategy not in self.presets:
            raise ValueError(f"strategy must be one of {list(self.presets)}, got {strategy!r}")
        self.points, self.dpi = check_int(points, "points", low=10), dpi
        self.controls: dict[str, W.ValueWidget] = {}
        self.schedule: S.Schedule | None = None
        self.error = ""
        self.redraws = 0
        self._holding = False
        self._x = np.zeros(0)
        self._y = np.zeros(0)

        self.figure = Figure(figsize=(7.5, 3.3))
        self.figure.subplots_adjust(left=0.11, right=0.97, bottom=0.15, top=0.9)  # fixed: no layout pass per draw
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot()
        self.dropdown = W.Dropdown(options=list(self.presets), value=strategy, description="strategy",
                                   style={"description_width": "9em"}, layout=W.Layout(width="26em"))
        self.logy = W.Checkbox(value=False, description="log scale", indent=False)
        self.controls_box = W.VBox()
        self.image = W.Image(format="png", layout=W.Layout(width="600px"))
        self.code = W.HTML()
        self.message = W.HTML()
        super().__init__([W.HBox([self.dropdown, self.logy]), self.controls_box, self.image, self.code,
                          self.message])
        self.dropdown.observe(self._on_strategy, names="value")
        self.logy.observe(self._update, names="value")
        self._build_controls()

    # ------------------------------------------------------------------------------------ state
    @property
    def strategy(self) -> str:
        return self.dropdown.value

    @strategy.setter
    def strategy(self, name: str) -> None:
        if name not in self.presets:
            raise ValueError(f"strategy must be one of {list(self.presets)}, got {name!r}")
        self.dropdown.value = name

    def values(self) -> dict[str, Any]:
        """The current value of every control of the current strategy."""
        return {name: c.value for name, c in self.controls.items()}

    def set(self, **values: Any) -> None:
        """Set several controls at once (one redraw), e.g. ``ex.set(lr=0.05, total=2000)``."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"{self.strategy!r} has no control(s) {unknown}; its controls: {list(self.controls)}")
        with self._hold():
            for name, value in values.items():
                self.controls[name].value = value
        self._update()

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The (x, y) points of the curve drawn now (copies)."""
        return self._x.copy(), self._y.copy()

    # ---------------------------------------------------------------------------------- drawing
    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def _on_strategy(self, _change: Any = None) -> None:
        self._build_controls()

    def _build_controls(self) -> None:
        spec = self.presets[self.strategy]
        old = self.values()
        for c in self.controls.values():
            c.unobserve(self._update, names="value")
        # keep the value of a control of the same name (the lr, the total) when it fits the new one
        self.controls = {p.name: p.widget(old[p.name] if p.name in old and p.accepts(old[p.name]) else None)
                         for p in spec.params}
        for c in self.controls.values():
            c.observe(self._update, names="value")
        self.controls_box.children = list(self.controls.values())
        self._update()

    def _update(self, _change: Any = None) -> None:
        if self._holding:
            return
        spec = self.presets[self.strategy]
        values = self.values()
        try:
            schedule = spec.build(values)
            total = spec.plot_total(values, schedule)
        except ValueError as err:
            self.error = str(err)
            self.message.value = f"<span style='color:#b00020'>Not a valid setting: {html.escape(self.error)}</span>"
            return
        self.schedule, self.error = schedule, ""
        self.ax.clear()
        plot_schedule(schedule, total, ax=self.ax, points=self.points, title=spec.name, logy=self.logy.value)
        line = self.ax.lines[0]
        self._x, self._y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=self.dpi)
        self.image.value = buf.getvalue()
        self.code.value = f"<code>lrlab.schedules.{html.escape(repr(schedule))}</code>"
        self.message.value = f"<i>{html.escape(spec.note)}</i>" if spec.note else ""
        self.redraws += 1


def schedule_explorer(strategy: str = "warmup + cosine", **kwargs: Any) -> ScheduleExplorer:
    """An interactive LR-schedule explorer: a dropdown of strategies, sliders for the chosen one's
    parameters (rebuilt when the strategy changes), and the curve, redrawn on every change.

    Display it by making it the last expression of a cell. ``strategy`` is the one shown first (see
    ``lrlab.widgets.SCHEDULE_PRESETS`` for the names). Invalid combinations (e.g. a warmup longer than the
    run) show a message under the plot and keep the last valid curve.
    """
    return ScheduleExplorer(strategy, **kwargs)


__all__ = ["Param", "SCHEDULE_PRESETS", "SchedulePreset", "ScheduleExplorer", "schedule_explorer", "schedule_grid"]
