"""Figures: a test metric (accuracy for CIFAR and digits) against epoch, noise rate or theta.

Every figure draws each method in the colour `PALETTE` gives it, so VaSSO is
the same red in all of them; a method the palette does not know gets a
colour derived from its name, the same in every figure too. Methods also
differ in line style (`METHOD_STYLES`: SAM and GSAM often coincide, and a
greyscale print loses the colours); variants of one method (two rho, say)
share its colour and step through the styles from its own. Each series is
one Line2D: the mean over finished seeds, with a light ±1 std band (a filled
polygon, not a line, clipped to the metric's bounds) where there are at least two
seeds; the legend says what the band is.
"""

from __future__ import annotations

import statistics
import zlib
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from benchmarks.methods import DASH_DOT_DOT, METHODS  # noqa: E402

from .grid import Grid, Group, extended_labels, format_value  # noqa: E402
from .runs import Problem, load_test_curve  # noqa: E402

# Each method's colour and its own line style (for the first of its variants) are the
# registry's (benchmarks.methods), so that every figure of the suite agrees.
PALETTE = {name: method.colour for name, method in METHODS.items()}
_SPARE = ("#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939")
METHOD_STYLES = {name: method.line_style for name, method in METHODS.items()}
_STYLES = ("-", "--", "-.", ":", DASH_DOT_DOT)
BAND_LABEL = "shaded: ±1 std over seeds"


def method_colour(method: str) -> str:
    """The colour of `method` in every figure (stable across runs: crc32, not hash())."""
    return PALETTE.get(method.lower()) or _SPARE[zlib.crc32(method.lower().encode()) % len(_SPARE)]


def _panels(count: int) -> tuple[Figure, list[Axes]]:
    cols = 2 if count == 4 else min(count, 3)  # four panels as 2x2, not 3 + 1
    rows = -(-count // cols)
    # At least 6.4 in wide (a paper's text width), so that a one-panel figure's title fits.
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 6.4), 3.6 * rows), squeeze=False)
    flat = list(axes.flat)
    for spare in flat[count:]:
        spare.set_visible(False)
    return fig, flat[:count]


def _draw(ax: Axes, x, mean, std, label: str, colour: str, style,
          bounds: tuple[float, float] | None = None) -> None:
    ax.plot(x, mean, linestyle=style, color=colour, label=label, marker="o" if len(x) <= 12 else None,
            markersize=3, linewidth=1.5, zorder=3)
    if std is not None:
        # A metric with bounds (an accuracy lies in [0, 100]): a band beyond them would
        # show values no seed can reach.
        floor, ceiling = bounds or (-float("inf"), float("inf"))
        low = [max(m - s, floor) for m, s in zip(mean, std)]
        high = [min(m + s, ceiling) for m, s in zip(mean, std)]
        # Light: where the bands of several methods overlap (early epochs) they stay readable.
        ax.fill_between(x, low, high, color=colour, alpha=0.1, linewidth=0, zorder=1)


def _legend_entries(ax: Axes) -> tuple[list, list[str]]:
    handles, labels = ax.get_legend_handles_labels()
    if ax.collections:  # say what the shading is
        handles.append(Patch(color="0.5", alpha=0.25, linewidth=0))
        labels.append(BAND_LABEL)
    return handles, labels


def _ylabel(grid: Grid) -> str:
    titles = dict.fromkeys(g.metric.title or g.metric.name for g in grid.groups)
    return "test " + (" / ".join(titles) or "metric")


def _finish(fig: Figure, axes: list[Axes], xlabel: str, ylabel: str, title: str) -> Figure:
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize="medium")
    entries = [_legend_entries(ax) for ax in axes if ax.lines]
    if entries and all(labels == entries[0][1] for _, labels in entries):
        # One legend, under the panels: inside an axes it covers curves and bands wherever
        # it goes (the bands fill most of a curves panel), and every panel would repeat it.
        handles, labels = entries[0]
        columns = min(len(labels), 3 if len(axes) == 1 else 6)
        fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize="small", frameon=False)
        rows = -(-len(labels) // columns)
        fig.tight_layout(rect=(0, 0.25 * rows / fig.get_figheight(), 1, 1))
        return fig
    for ax in axes:
        if ax.lines:
            ax.legend(*_legend_entries(ax), fontsize="small")
    fig.tight_layout()
    return fig


def _line_styles(groups_by_method: dict[str, list[str]]) -> dict[str, object]:
    """A line style per series label: the method's own for its first variant, then the next ones."""
    styles = {}
    for method, labels in groups_by_method.items():
        first = METHOD_STYLES.get(method.lower(), _STYLES[0])
        order = [first] + [style for style in _STYLES if style != first]
        for i, label in enumerate(dict.fromkeys(labels)):
            styles[label] = order[i % len(order)]
    return styles


def readable(name: str, value) -> str:
    """A panel title or axis label as a reader says it: "label noise 40%", "theta 0.4", "resnet18"."""
    if isinstance(value, str):
        return value
    words = name.replace("_", " ")
    if "noise" in name and isinstance(value, (int, float)):
        return f"{words} {100 * value:g}%"
    return f"{words} {format_value(value)}"


def mean_curve(group: Group, problems: list[Problem]) -> tuple[list[float], list[float], list[float] | None]:
    """Epochs every finished seed evaluated, the mean of the group's headline test
    metric there, and the std (None below 2 seeds)."""
    curves = []
    for run in group.runs:
        if run.state != "done":
            continue
        curve, found = load_test_curve(run.path, group.metric.name)
        problems.extend(found)
        if curve:
            curves.append(curve)
    if not curves:
        return [], [], None
    # Seeds of one cell train for the same epochs; a band over differing sets of seeds would mislead.
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    if not epochs:
        problems.append(Problem(group.runs[0].path.parent, f"{group.row}: seeds share no evaluated epoch"))
        return [], [], None
    mean = [statistics.fmean(c[e] for c in curves) for e in epochs]
    std = [statistics.stdev(c[e] for c in curves) for e in epochs] if len(curves) >= 2 else None
    return epochs, mean, std


def plot_curves(grid: Grid, problems: list[Problem] | None = None) -> Figure:
    """The headline test metric against epoch from metrics.jsonl, one panel per column,
    one line per row."""
    problems = [] if problems is None else problems
    fig, axes = _panels(max(len(grid.columns), 1))
    by_method: dict[str, list[str]] = defaultdict(list)
    for group in grid.groups:
        by_method[group.method].append(group.row)
    styles = _line_styles(by_method)
    for ax, column in zip(axes, grid.columns):
        first = next(g for g in grid.groups if g.column == column)
        ax.set_title(", ".join(readable(c, getattr(first.cfg, c)) for c in grid.column_fields))
        for group in grid.groups:
            if group.column != column:
                continue
            epochs, mean, std = mean_curve(group, problems)
            if epochs:
                collapsed = sum(run.collapsed for run in group.runs if run.state == "done")
                label = f"{group.row} (n={group.n}" + (f", {collapsed} collapsed" if collapsed else "") + ")"
                _draw(ax, epochs, mean, std, label, method_colour(group.method), styles[group.row],
                      group.metric.bounds)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(fig, axes, "epoch", _ylabel(grid), grid.title)


def sweep_field(grid: Grid) -> str:
    """The field a "noise" or "theta" figure puts on its x axis."""
    if grid.figure == "theta":
        return "theta"
    if grid.figure == "noise":
        names = list(grid.column_fields) + list(grid.groups[0].fields if grid.groups else ())
        for name in names:
            if "noise" in name:
                return name
        raise ValueError(f"experiment {grid.name!r}: no cell field names a noise rate for the 'noise' figure")
    raise ValueError(f"experiment {grid.name!r} has figure {grid.figure!r}, not a sweep ('noise' or 'theta')")


def plot_sweep(grid: Grid, x_field: str | None = None) -> Figure:
    """The headline test metric (mean, ±1 std band) against `x_field`, one line per method.

    Panels: the other column fields. A method measured at a single x (SAM in a
    theta sweep) is drawn as a dashed horizontal line across the panel.
    """
    x_field = x_field or sweep_field(grid)
    if grid.groups and not hasattr(grid.groups[0].cfg, x_field):
        raise ValueError(f"experiment {grid.name!r}: {x_field!r} is not a field of its cells")
    # A noise rate reads as a percentage, as the panel titles and the paper write it.
    percent = "noise" in x_field
    scale = 100.0 if percent else 1.0
    others = [c for c in grid.column_fields if c != x_field]
    panel_of = {id(g): ", ".join(readable(c, getattr(g.cfg, c)) for c in others) for g in grid.groups}
    # A series: all fields but x and seed equal. Label it by method, extended where two would collide.
    series_fields = [{k: v for k, v in g.fields.items() if k != x_field} for g in grid.groups]
    labels = extended_labels([(panel_of[id(g)], g.method, f) for g, f in zip(grid.groups, series_fields)])
    series: dict[tuple[str, str], list[Group]] = defaultdict(list)
    for group, label in zip(grid.groups, labels):
        series[(panel_of[id(group)], label)].append(group)
    by_method: dict[str, list[str]] = defaultdict(list)
    for (_, label), members in series.items():
        by_method[members[0].method].append(label)
    styles = _line_styles(by_method)

    panels = list(dict.fromkeys(panel_of[id(g)] for g in grid.groups)) or [""]
    fig, axes = _panels(len(panels))
    for ax, panel in zip(axes, panels):
        if panel:
            ax.set_title(panel)
        for (where, label), members in series.items():
            if where != panel:
                continue
            points = sorted(
                (scale * getattr(g.cfg, x_field), g.mean, g.std) for g in members if g.mean is not None
            )
            if not points:
                continue
            colour = method_colour(members[0].method)
            xs, means, stds = zip(*points)
            if len(points) == 1:
                ax.axhline(means[0], color=colour, linestyle="--", label=label)
                continue
            band = list(stds) if all(s is not None for s in stds) else None
            _draw(ax, list(xs), list(means), band, label, colour, styles[label],
                  members[0].metric.bounds)
    return _finish(fig, axes, x_field.replace("_", " ") + (" (%)" if percent else ""),
                   _ylabel(grid), grid.title)


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write `stem`.pdf and `stem`.png and close the figure."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}.pdf", stem.parent / f"{stem.name}.png"]  # names may hold dots
    fig.savefig(paths[0])
    fig.savefig(paths[1], dpi=150)
    plt.close(fig)
    return paths
