"""A Grid as the paper's table, in Markdown and in LaTeX (booktabs).

Layout: methods as rows, the experiment's columns as columns. A cell reads
"mean ± std (n)": test accuracy in percent, mean and sample standard
deviation (ddof=1) over the finished seeds, n the number of those seeds
("(2/3)" while some are not finished, no std for a single seed). The best
mean of each column (compared as printed, to two decimals) is bold whenever
at least two methods have a number there. A column whose cells have a paper
value compares like with like: it is split into "(final)", the accuracy at the
last epoch, and "(best)", the highest over epochs (the official code's "Max Test
Acc1", the statistic its numbers are), with the paper's value, "≈paper", right
after "(best)"; the other columns show the chosen metric. A cell without a finished
seed says why: "—" never launched, "running 1/3", "pending", "failed", "stopped",
"invalid"; every run that is not in the numbers is listed under the table
with its directory, and every file that had to be skipped with its path.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from .grid import Grid, Group
from .reference import REFERENCE_NOTE

NOT_DONE = ("running", "pending", "failed", "stopped", "invalid")  # the order a cell names them in


_WHEN = {
    "final": "at the final epoch",
    "best": "at the best epoch (highest test accuracy over epochs, as the official code reports)",
}


def caption(grid: Grid) -> str:
    stats = "mean ± sample standard deviation over seeds, number of seeds in brackets; best mean per column in bold."
    if not referenced_columns(grid):
        return f"Test accuracy (%) {_WHEN[grid.metric]}: {stats}"
    text = (
        f"Test accuracy (%): {stats} Beside the paper's value both statistics: (final) at the final "
        "epoch; (best) at the best epoch, the highest test accuracy over epochs, which the official "
        "code reports (\"Max Test Acc1\") and the one to compare with the paper's."
    )
    if set(grid.columns) - referenced_columns(grid):
        text += f" Columns without a paper value: {_WHEN[grid.metric]}."
    return f"{text} {REFERENCE_NOTE}."


def referenced_columns(grid: Grid) -> set[str]:
    """The columns where some cell has a paper value: they show final and best."""
    return {g.column for g in grid.groups if g.reference}


def _summary(group: Group, metric: str | None) -> tuple[int, float | None, float | None]:
    """(n, mean, sample std) of the group's finished seeds at `metric` (None: the grid's)."""
    values = group.values_at(metric)
    mean = statistics.fmean(values) if values else None
    std = statistics.stdev(values) if len(values) >= 2 else None
    return len(values), mean, std


def best_means(grid: Grid, metric: str | None = None) -> dict[str, float]:
    """Per column, the highest mean as printed, where at least two methods have one."""
    best = {}
    for column in grid.columns:
        means = [round(m, 2) for g in grid.groups if g.column == column
                 for m in [_summary(g, metric)[1]] if m is not None]
        if len(means) >= 2:
            best[column] = max(means)
    return best


@dataclass(frozen=True)
class _Style:
    pm: str
    dash: str
    approx: str
    bold: Callable[[str], str]
    escape: Callable[[str], str]


_MARKDOWN = _Style(
    pm="±",
    dash="—",
    approx="≈",
    bold=lambda s: f"**{s}**",
    escape=lambda s: s.replace("|", "\\|"),
)

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "—": "---", "≈": r"$\approx$", "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


_LATEX = _Style(pm=r"$\pm$", dash="---", approx=r"$\approx$", bold=lambda s: rf"\textbf{{{s}}}", escape=latex_escape)


def _cell(group: Group | None, best: float | None, style: _Style, metric: str | None = None) -> str:
    if group is None:  # no cell of the experiment has this (row, column)
        return ""
    total = len(group.runs)
    n, mean, std = _summary(group, metric)
    if n == 0:
        parts = []
        for state in NOT_DONE:
            count = group.count(state)
            if count:
                parts.append(state if count == total else f"{state} {count}/{total}")
        return ", ".join(parts) or style.dash
    numbers = f"{mean:.2f}"
    if std is not None:
        numbers += f" {style.pm} {std:.2f}"
    if best is not None and round(mean, 2) == best:
        numbers = style.bold(numbers)
    seeds = f"({n})" if n == total else f"({n}/{total})"
    return f"{numbers} {seeds}"


def _layout(grid: Grid, style: _Style) -> tuple[list[str], list[list[str]]]:
    """Header and body rows, cells already in `style`."""
    best = {metric: best_means(grid, metric) for metric in (None, "final", "best")}
    with_reference = referenced_columns(grid)
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
                line.append(_cell(group, best[None].get(column), style))
                continue
            for metric in ("final", "best"):
                line.append(_cell(group, best[metric].get(column), style, metric))
            ref = group.reference if group is not None else None
            line.append(f"{style.approx}{ref.text}" if ref else "")
        body.append(line)
    return header, body


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


def markdown(grid: Grid) -> str:
    header, body = _layout(grid, _MARKDOWN)
    out = [f"# {grid.title}", "", caption(grid), ""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
    out += ["| " + " | ".join(line) + " |" for line in body]
    missing = not_in_table(grid)
    if missing:
        out += ["", f"Not in the numbers ({len(missing)} of {len(grid.runs)} runs):", ""]
        out += [f"- {_MARKDOWN.escape(line)}" for line in missing]
    if grid.problems:
        out += ["", "Skipped files:", ""]
        out += [f"- {problem}" for problem in grid.problems]
    return "\n".join(out) + "\n"


def latex(grid: Grid) -> str:
    """A `table` float for \\input; needs \\usepackage{booktabs}."""
    header, body = _layout(grid, _LATEX)
    label = "".join(ch if ch.isalnum() else "-" for ch in grid.name)
    out = [
        f"% Generated by `python -m results {grid.name}`; needs \\usepackage{{booktabs}}.",
        r"\begin{table}[ht]",
        r"  \centering",
        f"  \\caption{{{latex_escape(grid.title)}. {latex_escape(caption(grid))}}}",
        f"  \\label{{tab:{label}}}",
        f"  \\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}",
        r"    \toprule",
        "    " + " & ".join(header) + r" \\",
        r"    \midrule",
    ]
    out += ["    " + " & ".join(line) + r" \\" for line in body]
    out += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}"]
    # What the table cannot show stays in the source, where whoever includes it will see it.
    out += [f"% not in the numbers: {line}" for line in not_in_table(grid)]
    out += [f"% skipped: {problem}" for problem in grid.problems]
    return "\n".join(out) + "\n"
