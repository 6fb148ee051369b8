"""A Grid as the paper's table, in Markdown and in LaTeX (booktabs).

Layout: methods as rows, the experiment's columns as columns. A cell reads
"mean ± std (n)": the column's test metric (the task's primary one unless the
experiment names others; accuracy in percent for CIFAR and digits), mean and
sample standard deviation (ddof=1) over the finished seeds, each printed in its
metric's format, n the number of those seeds ("(2/3)" while some are not
finished, no std for a single seed). A column may show several metrics, "F1 /
acc": "mean ± std / mean ± std (n)". The best mean of each column and metric
(compared as printed; the highest, or the lowest for a metric where lower is
better) is bold whenever at least two methods have a number there. A column
whose cells have a paper value compares like with like: it is split into
"(final)", the last evaluation, and "(best)", the best evaluation by the primary
metric (the official code's "Max Test Acc1", the statistic its numbers are),
with the paper's value, "≈paper", right after "(best)"; the other columns show
the chosen statistic. A cell without a finished
seed says why: "—" never launched, "running 1/3", "pending", "failed", "stopped",
"invalid"; every run that is not in the numbers is listed under the table
with its directory, and every file that had to be skipped with its path.

A collapsed run (benchmarks.collapse: it finished, at chance) is never averaged in
silently: its cell reads "all: mean ± std (n); k of n runs collapsed; excl.
collapsed: mean ± std (n - k)", and it is listed under the table. A diverged run
(failed on a non-finite loss) has no final numbers: its cell adds "k of n runs
diverged (no final accuracy)".
"""

from __future__ import annotations

import html as html_text
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from . import stats
from .grid import BASELINE_LABEL, BASELINE_NOTE, Grid, Group
from .reference import REFERENCE_NOTE

NOT_DONE = ("running", "pending", "failed", "stopped", "invalid")  # the order a cell names them in


_WHEN = {
    "final": "at the final evaluation",
    "best": "at the best evaluation (by the task's primary metric, as the official code reports)",
}


def _measured(grid: Grid) -> str:
    """What the numbers are: "Test accuracy (%)", "Test F1 / accuracy (%)"."""
    shown = dict.fromkeys(" / ".join(m.title or m.name for m in g.metrics) for g in grid.groups)
    return "Test " + ("; ".join(shown) or "metric")


def caption(grid: Grid) -> str:
    stats = ("mean ± sample standard deviation over seeds, number of seeds in brackets; best mean per column "
             "in bold, with † where it is not distinguishable from the runner-up (paired by seed, 95% t-interval).")
    if not referenced_columns(grid):
        return f"{_measured(grid)} {_WHEN[grid.at]}: {stats}{_collapse_note(grid)}"
    text = (
        f"{_measured(grid)}: {stats} Beside the paper's value both statistics: (final) at the final "
        "evaluation; (best) at the best evaluation by the primary metric, which the official "
        "code reports (\"Max Test Acc1\") and the one to compare with the paper's."
    )
    if set(grid.columns) - referenced_columns(grid):
        text += f" Columns without a paper value: {_WHEN[grid.at]}."
    return f"{text}{_collapse_note(grid)} {REFERENCE_NOTE}."


def _collapse_note(grid: Grid) -> str:
    if not any(g.collapsed or g.diverged for g in grid.groups):
        return ""
    return (" A collapsed run (training loss stuck at the uniform-prediction level, "
            "docs/collapse.md) is counted in \"all\" and left out of \"excl. collapsed\"; "
            "a diverged run (non-finite loss) has no final numbers and is in neither.")


def referenced_columns(grid: Grid) -> set[str]:
    """The columns where some cell has a paper value: they show final and best."""
    return {g.column for g in grid.groups if g.reference}


def _printed(value: float, metric) -> float:
    return float(format(value, metric.format))


def best_means(grid: Grid, at: str | None = None) -> dict[tuple[str, str], float]:
    """Per (column, metric), the best mean as printed, where at least two methods have one."""
    best = {}
    for column in grid.columns:
        groups = [g for g in grid.groups if g.column == column]
        for metric in dict.fromkeys(m for g in groups for m in g.metrics):
            means = [_printed(statistics.fmean(values), metric) for g in groups
                     for values in [g.values_at(at, metric=metric.name)] if values]
            if len(means) >= 2:
                best[(column, metric.name)] = max(means) if metric.higher_is_better else min(means)
    return best


@dataclass(frozen=True)
class _Style:
    pm: str
    dash: str
    approx: str
    dagger: str
    bold: Callable[[str], str]
    escape: Callable[[str], str]


_MARKDOWN = _Style(
    pm="±",
    dash="—",
    approx="≈",
    dagger="†",
    bold=lambda s: f"**{s}**",
    escape=lambda s: s.replace("|", "\\|"),
)

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "—": "---", "≈": r"$\approx$", "±": r"$\pm$", "†": r"$^\dagger$", "·": r"\textperiodcentered{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


_LATEX = _Style(pm=r"$\pm$", dash="---", approx=r"$\approx$", dagger=r"$^\dagger$",
                bold=lambda s: rf"\textbf{{{s}}}", escape=latex_escape)

_HTML = _Style(pm="±", dash="—", approx="≈", dagger="†", bold=lambda s: f"<strong>{s}</strong>", escape=html_text.escape)


def _statistics(group: Group, at: str | None, style: _Style, total: int,
                best: dict[tuple[str, str], float] | None = None, collapsed: bool = True,
                undecided: frozenset = frozenset()) -> str:
    """"mean ± std / ... (n)" over the group's metrics, "(n/total)" when some runs are
    not among the numbers; a best mean bold, with a dagger where its (column, metric)
    is `undecided` (not distinguishable from the runner-up, results.stats)."""
    parts = []
    for metric in group.metrics:
        values = group.values_at(at, collapsed, metric.name)
        if not values:
            parts.append(style.dash)
            continue
        mean = statistics.fmean(values)
        numbers = format(mean, metric.format)
        if len(values) >= 2:
            numbers += f" {style.pm} {format(statistics.stdev(values), metric.format)}"
        if best is not None and best.get((group.column, metric.name)) == _printed(mean, metric):
            numbers = style.bold(numbers) + (style.dagger if (group.column, metric.name) in undecided else "")
        parts.append(numbers)
    n = len(group.values_at(at, collapsed))
    if n == 0:
        return style.dash
    seeds = f"({n})" if n == total else f"({n}/{total})"
    return f"{' / '.join(parts)} {seeds}"


def _cell(group: Group | None, best: dict[tuple[str, str], float], style: _Style,
          at: str | None = None, undecided: frozenset = frozenset()) -> str:
    if group is None:  # no cell of the experiment has this (row, column)
        return ""
    total = len(group.runs)
    values = group.values_at(at)
    if not values:
        parts = []
        for state in NOT_DONE:
            count = group.count(state)
            if count:
                parts.append(state if count == total else f"{state} {count}/{total}")
        text = ", ".join(parts) or style.dash
    else:
        text = _statistics(group, at, style, total, best, undecided=undecided)
    # Collapsed and diverged runs are never averaged in silently (docs/collapse.md).
    without = group.values_at(at, collapsed=False)
    if len(without) < len(values):  # collapsed runs are among the numbers
        text = (f"all: {text}; {group.collapsed} of {total} runs collapsed; "
                f"excl. collapsed: {_statistics(group, at, style, total - group.collapsed, collapsed=False)}")
    elif group.collapsed:  # stopped by --stop-on-collapse: failed, no final numbers
        text += f"; {group.collapsed} of {total} runs collapsed (stopped, no final numbers)"
    if group.diverged:
        text += f"; {group.diverged} of {total} runs diverged (no final numbers)"
    return text


def _layout(grid: Grid, style: _Style) -> tuple[list[str], list[list[str]]]:
    """Header and body rows, cells already in `style`."""
    best = {at: best_means(grid, at) for at in (None, "final", "best")}
    with_reference = referenced_columns(grid)
    undecided = {at: stats.undecided_best(grid, at) for at in (None, "final", "best")}
    header = [style.escape(grid.row_field)]
    for column in grid.columns:
        if column in with_reference:  # like with like: the paper's value beside the best epoch
            header += [style.escape(f"{column} (final)"), style.escape(f"{column} (best)"),
                       f"{style.approx}paper"]
        else:
            header.append(style.escape(column))
    body = []
    for row in grid.rows:
        line = [style.escape(row)]
        for column in grid.columns:
            group = grid.cell(row, column)
            if column not in with_reference:
                line.append(_cell(group, best[None], style, None, undecided[None]))
                continue
            for at in ("final", "best"):
                line.append(_cell(group, best[at], style, at, undecided[at]))
            ref = group.reference if group is not None else None
            line.append(f"{style.approx}{ref.text}" if ref else "")
        if grid.average:
            line.append(_average(grid, row, style))
        body.append(line)
    if grid.average:
        header.append(style.escape(f"average ({grid.average})"))
    if grid.baseline:
        values = [grid.baseline.get(column, "") for column in grid.columns]
        numbers = [float(v) for v in values if v]
        line = [style.escape(BASELINE_LABEL)]
        for column, value in zip(grid.columns, values):
            # A published final figure: under (final) where the column has three cells.
            line += [value, "", ""] if column in with_reference else [value]
        if grid.average:
            line.append(f"{statistics.fmean(numbers):.1f}" if len(numbers) == len(values) else "")
        body.append(line)
    return header, body


def _average(grid: Grid, row: str, style: _Style) -> str:
    """Per seed, the mean of ``grid.average`` over the row's columns; mean ± std (n) over
    the seeds that every column has finished."""
    per_seed: dict[int, list[float]] = {}
    for column in grid.columns:
        group = grid.cell(row, column)
        for seed, value in (group.values_by_seed(None, metric=grid.average) if group else {}).items():
            per_seed.setdefault(seed, []).append(value)
    means = [statistics.fmean(v) for v in per_seed.values() if len(v) == len(grid.columns)]
    if not means:
        return style.dash
    text = f"{statistics.fmean(means):.2f}"
    if len(means) >= 2:
        text += f" {style.pm} {statistics.stdev(means):.2f}"
    return f"{text} ({len(means)})"


def stat_columns(grid: Grid) -> list[tuple[str, str | None, str]]:
    """(column, at, label) of every numeric table column: a column with a paper
    value is two, "(final)" and "(best)"."""
    with_reference = referenced_columns(grid)
    return [(column, at, f"{column} ({at})" if at else column)
            for column in grid.columns
            for at in (("final", "best") if column in with_reference else (None,))]


def differences(grid: Grid, baseline: str | None = None) -> list[str]:
    """The paired comparisons printed under the table (results.stats), with their heading."""
    lines = stats.difference_lines(grid, stat_columns(grid), baseline)
    if not lines:
        return []
    return [f"Paired differences ({stats.INTERVAL}, in the metric's units):"] + lines


def not_in_table(grid: Grid) -> list[str]:
    """One line per run that is not among the numbers: what it is, its state, its directory."""
    lines = []
    for group in grid.groups:
        where = f"{group.row} · {group.column}" if group.column else group.row
        for run in group.runs:
            if run.state == "done":
                continue
            seed = getattr(run.cfg, "seed", "?")
            state = run.state
            if run.error:
                state += f" ({run.error})"
            lines.append(f"{where} · seed {seed}: {state} — {run.path}")
    return lines


def collapsed_runs(grid: Grid) -> list[str]:
    """One line per collapsed run: where it is, since when, and whether it is in "all"."""
    lines = []
    for group in grid.groups:
        where = f"{group.row} · {group.column}" if group.column else group.row
        for run in group.runs:
            if not run.collapsed:
                continue
            found = run.collapse or {}
            since = f" since epoch {found['since_epoch']}" if "since_epoch" in found else ""
            value = run.value(group.metric.name)
            counted = (f"{format(value, group.metric.format)}, in \"all\" only" if value is not None
                       else "stopped")
            lines.append(f"{where} · seed {getattr(run.cfg, 'seed', '?')}: collapsed{since} "
                         f"({counted}) — {run.path}")
    return lines


def signature_lines(grid: Grid) -> list[str]:
    """One line per signed metric: its signature, or the ones the runs disagree on."""
    lines = []
    for label, counts in grid.signatures.items():
        if len(counts) == 1:
            [(signature, runs)] = counts.items()
            lines.append(f"{label} ({runs} finished run{'s' * (runs > 1)}): {signature}")
        else:
            each = "; ".join(f"{signature} ({runs} runs)" for signature, runs in sorted(counts.items()))
            lines.append(f"{label}s differ between the runs, whose figures are therefore not "
                         f"comparable: {each}")
    return lines


def markdown(grid: Grid, baseline: str | None = None) -> str:
    header, body = _layout(grid, _MARKDOWN)
    out = [f"# {grid.title}", "", caption(grid), ""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
    out += ["| " + " | ".join(line) + " |" for line in body]
    if grid.baseline:
        out += ["", BASELINE_NOTE]
    for line in signature_lines(grid):
        out += ["", line]  # a paragraph: its "|" separators need no escape
    compared = differences(grid, baseline)
    if compared:
        out += ["", compared[0], ""] + [f"- {_MARKDOWN.escape(line)}" for line in compared[1:]]
    collapsed = collapsed_runs(grid)
    if collapsed:
        out += ["", f"Collapsed runs ({len(collapsed)} of {len(grid.runs)} runs):", ""]
        out += [f"- {_MARKDOWN.escape(line)}" for line in collapsed]
    missing = not_in_table(grid)
    if missing:
        out += ["", f"Not in the numbers ({len(missing)} of {len(grid.runs)} runs):", ""]
        out += [f"- {_MARKDOWN.escape(line)}" for line in missing]
    if grid.problems:
        out += ["", "Skipped files:", ""]
        out += [f"- {problem}" for problem in grid.problems]
    return "\n".join(out) + "\n"


def tabular(grid: Grid) -> str:
    """The table's booktabs `tabular` alone (no float, no caption)."""
    header, body = _layout(grid, _LATEX)
    out = [f"\\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}", r"  \toprule",
           "  " + " & ".join(header) + r" \\", r"  \midrule"]
    out += ["  " + " & ".join(line) + r" \\" for line in body]
    out += [r"  \bottomrule", r"\end{tabular}"]
    return "\n".join(out)


def html(grid: Grid) -> str:
    """The table as an HTML `<table>` (the report's page; `caption(grid)` goes beside it)."""
    header, body = _layout(grid, _HTML)
    out = [f'<table class="results" id="table-{html_text.escape(grid.name)}">', "<thead><tr>" + "".join(f"<th>{cell}</th>" for cell in header) + "</tr></thead>", "<tbody>"]
    out += ["<tr>" + f"<th>{line[0]}</th>" + "".join(f"<td>{cell}</td>" for cell in line[1:]) + "</tr>"
            for line in body]
    out.append("</tbody></table>")
    return "\n".join(out)


def latex(grid: Grid, baseline: str | None = None) -> str:
    """A `table` float for \\input; needs \\usepackage{booktabs}."""
    label = "".join(ch if ch.isalnum() else "-" for ch in grid.name)
    out = [
        f"% Generated by `python -m results {grid.name}`; needs \\usepackage{{booktabs}}.",
        r"\begin{table}[ht]",
        r"  \centering",
        f"  \\caption{{{latex_escape(grid.title)}. {latex_escape(caption(grid))}}}",
        f"  \\label{{tab:{label}}}",
        *("  " + line for line in tabular(grid).splitlines()),
    ]
    for line in signature_lines(grid):
        out += [r"  \par\smallskip\footnotesize " + latex_escape(line)]
    compared = differences(grid, baseline)
    if compared:
        out += [r"  \par\smallskip\footnotesize " + latex_escape(compared[0])]
        out += [f"  \\\\ {latex_escape(line)}" for line in compared[1:]]
    out += [r"\end{table}"]
    # What the table cannot show stays in the source, where whoever includes it will see it.
    out += [f"% collapsed: {line}" for line in collapsed_runs(grid)]
    out += [f"% not in the numbers: {line}" for line in not_in_table(grid)]
    out += [f"% skipped: {problem}" for problem in grid.problems]
    return "\n".join(out) + "\n"
