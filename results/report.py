"""`python -m results.report` (`make report`): everything reproduced so far, one PDF and one web page.

    python -m results.report [--runs-dir DIR] [--out DIR] [--metric final|best]
                             [--experiments-module MODULE] [--only NAME ...]

reads the run directories of every experiment (nothing is trained) and writes, under
`<out>/report/`, `report.html` (one static page: tables as HTML, figures embedded as
PNG, no script, nothing fetched: open it from disk or mail it) and `report.pdf`
(`report.tex` compiled by pdflatex: the booktabs tables, the figures as vector PDF).

One section per experiment in the order of `benchmarks.experiments` (the paper's
tables first, then the suite's own): its title, what it reproduces, the table (the
paper's value beside ours), its figures, and the cells that are not in the numbers
(missing, running, failed, ...) with the command that completes them. An experiment
none of whose cells is done is listed as not yet run, with the command that starts it.

Provenance, per experiment (the PDF's appendix, the page's details): the commits of
the suite that made the runs, the python / torch / CUDA versions, devices and hosts
(meta.json, every start of every run), the recipe settings that differ from the
official code (docs/recipe.md, CIFAR experiments), the seeds, and one line per
finished run: its numbers and the run directory they came from. The commit most of
the report's finished runs were made by is the reference; a run made (or resumed) by
another is marked "(other commit)" where its numbers are listed, and its section says how many.

States come from the one classifier (`benchmarks.runstate`, through `grid.collect`),
the same `python -m slurm status` shows. Exit status: 0 written, 1 the PDF could not
be made (no pdflatex, or it failed: the HTML and the .tex are written all the same),
2 bad input.
"""

from __future__ import annotations

import base64
import html
import os
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.config import ArgumentParser
from benchmarks.rundir import META, git_commit, try_read_json
from benchmarks.runstate import DONE, FAILED, INVALID, NOT_LAUNCHED, PENDING, RUNNING, STOPPED, scheduler_queue

from . import render
from .grid import ExperimentError, Grid, Group, collect
from .reference import recipe_rows
from .render import latex_escape
from .runs import AT, Run

MARK = "(other commit)"  # a number made by another commit of the suite than the report's others
SEED_NOTE = ("seed indices; the engine derives each run's seed from (task, dataset, model, index), "
             "never from the method, so every method of a seed sees the same data and initial weights")


# -- what the report holds -----------------------------------------------------------------

@dataclass
class Source:
    """Where one finished run's numbers came from (its meta.json)."""

    group: Group
    run: Run
    commits: list[str]  # every commit of the suite that worked on the run, one per start, in order
    hosts: list[str]
    devices: list[str]
    versions: dict[str, Any]  # of the latest start: python, torch, cuda, ...
    problem: str | None = None  # meta.json absent or damaged
    marked: bool = False  # made (or resumed) by another commit than the report's reference

    @property
    def where(self) -> str:
        return f"{self.run.path.parent.name}/{self.run.path.name}"  # experiment/cell-id


@dataclass
class Section:
    """One experiment: its grid, figures and the provenance of its numbers."""

    experiment: Any
    grid: Grid
    figures: list[Path] = field(default_factory=list)  # stems: <stem>.pdf and <stem>.png exist
    sources: list[Source] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (command, what it completes)

    @property
    def done(self) -> int:
        return sum(run.state == DONE for run in self.grid.runs)

    @property
    def marked(self) -> int:
        return sum(source.marked for source in self.sources)


@dataclass
class Report:
    runs_dir: Path
    sections: list[Section]
    commit: str | None  # the commit most finished runs were made by: the reference
    rendered_by: str | None  # the commit of the checkout that rendered the report
    created: str


def read_source(group: Group, run: Run) -> Source:
    meta, problem = try_read_json(run.path / META)
    meta = meta if isinstance(meta, dict) else {}
    starts = [s for s in meta.get("starts", []) if isinstance(s, dict)]

    def every(key: str) -> list[str]:
        # Older runs record the commit and device once, for the latest start only.
        found = [str(s[key]) for s in starts if s.get(key)] or ([str(meta[key])] if meta.get(key) else [])
        return list(dict.fromkeys(found))

    versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    return Source(group, run, every("git_commit"), every("host"), every("device"), versions,
                  problem=None if problem is None else f"meta.json {problem}")


def completing_commands(grid: Grid, options: str) -> list[tuple[str, str]]:
    """The commands that complete the experiment, each with the cells it acts on."""
    counts = Counter(run.state for run in grid.runs)

    def cells(*states: str) -> str:
        """"2 not launched and 1 stopped cells", "1 failed cell"."""
        kinds = " and ".join(f"{counts[s]} {s}" for s in states if counts[s])
        return f"{kinds} cell{'' if sum(counts[s] for s in states) == 1 else 's'}"

    name = shlex.quote(grid.name)
    commands = []
    if counts[NOT_LAUNCHED] or counts[STOPPED]:
        resumes = " (a stopped one resumes from its checkpoint)" if counts[STOPPED] else ""
        commands.append((f"python -m slurm launch {name}{options}",
                         f"starts the {cells(NOT_LAUNCHED, STOPPED)}{resumes}"))
    if counts[FAILED]:
        commands.append((f"python -m slurm retry {name}{options}", f"reruns the {cells(FAILED)}"))
    if counts[INVALID]:
        commands.append((f"python -m slurm repair {name}{options}",
                         f"moves the damaged files of the {cells(INVALID)} aside; launch then reruns them"))
    if counts[RUNNING] or counts[PENDING]:
        commands.append((f"python -m slurm status {name}{options}",
                         f"follows the {cells(RUNNING, PENDING)}; `make report` again renders them once done"))
    return commands


def state_summary(grid: Grid) -> str:
    counts = Counter(run.state for run in grid.runs)
    order = (DONE, RUNNING, PENDING, STOPPED, FAILED, INVALID, NOT_LAUNCHED)
    return f"{counts[DONE]} of {len(grid.runs)} cells done" + "".join(
        f", {counts[s]} {s}" for s in order[1:] if counts[s])


def build(experiments: list[Any], runs_dir: Path, folder: Path, at: str = "final",
          options: str = "") -> Report:
    """Read every experiment's runs into a Report; figures are drawn into `folder/figures`.

    `options`: what the completing commands need to find the same cells (--runs-dir ...).
    """
    from .cli import draw_figures

    queue = scheduler_queue()  # one squeue for the whole report
    sections = []
    for experiment in experiments:
        grid = collect(experiment, runs_dir=runs_dir, at=at, slurm_jobs=queue)
        section = Section(experiment, grid, commands=completing_commands(grid, options))
        if section.done:
            section.figures = [p.with_suffix("") for p in draw_figures(grid, folder / "figures")
                               if p.suffix == ".pdf"]
            section.sources = [read_source(g, r) for g in grid.groups for r in g.runs if r.state == DONE]
        sections.append(section)
    commits = Counter(c for s in sections for source in s.sources for c in source.commits)
    reference = commits.most_common(1)[0][0] if commits else None
    for section in sections:
        for source in section.sources:
            source.marked = reference is not None and any(c != reference for c in source.commits)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Report(runs_dir, sections, reference, git_commit(), created)


# -- the parts both renderings share ----------------------------------------------------------

def short(commit: str | None) -> str:
    return commit[:10] if commit else "unknown"


def tally(values: list[str]) -> str:
    """"a (3 runs), b (1 run)", most frequent first."""
    counts = Counter(values)
    return ", ".join(f"{value} ({n} run{'s' if n > 1 else ''})" for value, n in counts.most_common()) or "unknown"


def environment(section: Section, reference: str | None) -> list[tuple[str, str]]:
    """(what, value) lines of an experiment's provenance."""
    sources = section.sources

    def version(name: str) -> str:
        return tally([str(s.versions.get(name) or "none") for s in sources])

    commits = [short(c) + (f" {MARK}" if c != reference else "") for s in sources for c in s.commits]
    lines = [
        ("commit of the suite", tally(commits)),
        ("python", version("python")),
        ("torch", version("torch")),
        ("CUDA", version("cuda")),
        ("devices", tally([d for s in sources for d in s.devices])),
        ("hosts", tally([h for s in sources for h in s.hosts])),
        ("seeds", ", ".join(str(v) for v in sorted({getattr(s.run.cfg, "seed", "?") for s in sources},
                                                      key=str)) + f" ({SEED_NOTE})"),
    ]
    unreadable = [f"{s.where}: {s.problem}" for s in sources if s.problem]
    if unreadable:
        lines.append(("unreadable", "; ".join(unreadable)))
    return lines


def recipe_differences(experiment: Any) -> list[str]:
    """The settings of the experiment that differ from the official code, one line each:
    "setting: the suite's value (why)", from docs/recipe.md (the CIFAR recipe)."""
    if not all(getattr(cfg, "task", None) == "cifar" for cfg in experiment.cells):
        return ["the suite's own experiment: no official code to compare with (benchmarks/experiments.py)"]
    rows = [r for r in recipe_rows() if not r["why they differ"].startswith("same")]
    plain = lambda text: text.replace("`", "").replace("*", "")  # Markdown's code and emphasis
    return [plain(f"{r['setting']}: {r['suite default (paper experiments)']} ({r['why they differ']})")
            for r in rows] + ["the official code's value and file:line of each: docs/recipe.md"]


def source_rows(section: Section) -> tuple[list[str], list[list[str]]]:
    """The header and one row per finished run: its numbers and where they came from."""
    header = [section.grid.row_field, "column", "seed", "test metric", *AT, "commit", "host", "device",
              "run directory"]
    rows = []
    for s in section.sources:
        metric = s.group.metric  # the headline one: the table's, the figure's
        numbers = [format(value, metric.format) if value is not None else "—"
                   for value in (s.run.value(metric.name, at) for at in AT)]
        commit = ", ".join(short(c) for c in s.commits) or "unknown"
        rows.append([s.group.row, s.group.column or "—", str(getattr(s.run.cfg, "seed", "?")), metric.name, *numbers,
                     commit + (f" {MARK}" if s.marked else ""), ", ".join(s.hosts) or "unknown",
                     ", ".join(s.devices) or "unknown", s.where])
    return header, rows


def marked_note(section: Section, reference: str | None) -> str | None:
    if not section.marked:
        return None
    return (f"{section.marked} of {section.done} finished runs were made (or resumed) by another commit "
            f"of the suite than the report's others ({short(reference)}): marked {MARK} in the provenance.")


# -- LaTeX -------------------------------------------------------------------------------------

def _tex(text: str) -> str:
    """Escaped, with break points after slashes (run directories, paths); "--" stays two
    hyphens (options), and a character pdflatex has no glyph for becomes "?"."""
    hyphens = latex_escape(text.replace("--", "\0"))  # not "---", the escape of an em dash
    escaped = hyphens.replace("\0", "-{}-").replace("/", "/\\allowbreak{}")
    return "".join(ch if ord(ch) < 128 else "?" for ch in escaped)


def latex_document(report: Report) -> str:
    out = [
        r"\documentclass[10pt]{article}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\usepackage{booktabs,graphicx,longtable}",
        r"\usepackage[hidelinks]{hyperref}",
        r"\setlength{\emergencystretch}{3em}",
        r"\title{VaSSO reproduction: what has been reproduced so far}",
        rf"\date{{{_tex(report.created)}}}",
        r"\author{}",
        r"\begin{document}",
        r"\maketitle",
        _tex(f"Rendered from the run directories under {report.runs_dir} by commit "
             f"{short(report.rendered_by)} of the suite; the finished runs' reference commit is "
             f"{short(report.commit)}. Provenance of every number: appendix."),
        r"\tableofcontents",
    ]
    for section in report.sections:
        out += _latex_section(section, report)
    out += [r"\clearpage", r"\appendix", r"\section{Provenance}"]
    for section in report.sections:
        out += _latex_provenance(section, report)
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def _latex_section(section: Section, report: Report) -> list[str]:
    grid = section.grid
    out = [rf"\section{{{_tex(grid.title)}}}", _tex(section.experiment.reproduces or ""), ""]
    if not section.done:
        out += [_tex(f"Not yet run: {state_summary(grid)}."), ""]
        return out + _latex_commands(section)
    # Not floats: the paper's own table numbers are in the titles, and nothing drifts
    # into another experiment's section. Wide tables (CIFAR: four models, each with final,
    # best and the paper) shrink to the page.
    out += [
        r"\begin{center}", r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        render.tabular(grid) + "}", r"\end{center}", rf"{{\small {_tex(render.caption(grid))}}}",
    ]
    out += [rf"\par{{\small {_tex(line)}}}" for line in render.signature_lines(grid)]
    # results/stats.py's paired statistics (per column, each method against its baseline) go here.
    note = marked_note(section, report.commit)
    if note:
        out += ["", _tex(note)]
    for stem in section.figures:
        out += [r"\begin{center}", rf"\includegraphics[width=0.85\linewidth]{{figures/{stem.name}.pdf}}",
                r"\end{center}"]
    out += ["", _tex(state_summary(grid)) + "."]
    out += _latex_commands(section)
    missing = render.not_in_table(grid) + render.collapsed_runs(grid) + [str(p) for p in grid.problems]
    if missing:
        out += [r"\begin{itemize}\footnotesize"] + [rf"\item {_tex(line)}" for line in missing]
        out.append(r"\end{itemize}")
    out.append(r"\clearpage")
    return out


def _latex_commands(section: Section) -> list[str]:
    if not section.commands:
        return []
    out = [r"\begin{itemize}"]
    out += [rf"\item \texttt{{{_tex(command)}}}: {_tex(what)}" for command, what in section.commands]
    return out + [r"\end{itemize}"]


def _latex_provenance(section: Section, report: Report) -> list[str]:
    out = [rf"\subsection{{{_tex(section.grid.title)}}}"]
    if not section.done:
        return out + ["Not yet run: no finished cell.", ""]
    out += [r"\begin{description}"]
    out += [rf"\item[{_tex(what)}] {_tex(value)}" for what, value in environment(section, report.commit)]
    out += [r"\item[recipe] settings that differ from the official code:", r"\begin{itemize}\small"]
    out += [rf"\item {_tex(line)}" for line in recipe_differences(section.experiment)]
    out += [r"\end{itemize}", r"\end{description}"]
    header, rows = source_rows(section)
    out += [r"{\scriptsize\setlength{\tabcolsep}{3pt}",
            r"\begin{longtable}{llllrrllll}", r"\toprule",
            " & ".join(_tex(h) for h in header) + r" \\", r"\midrule", r"\endhead"]
    out += [" & ".join(_tex(cell) for cell in row) + r" \\" for row in rows]
    out += [r"\bottomrule", r"\end{longtable}}"]
    return out


# -- HTML --------------------------------------------------------------------------------------

STYLE = """
body { font-family: sans-serif; max-width: 75em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
p.caption { font-size: 0.85em; color: #555; margin-top: 0; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #222; }
table.provenance td, table.provenance th { text-align: left; font-size: 0.85em; }
figure img { max-width: 100%; }
code { background: #f4f4f4; padding: 0.1em 0.3em; }
.marked { color: #a00; }
"""


def _h(text: str) -> str:
    return html.escape(text)


def html_page(report: Report) -> str:
    out = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<link rel="icon" href="data:,">',  # no favicon request: nothing is fetched
        "<title>VaSSO reproduction report</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        "<h1>VaSSO reproduction: what has been reproduced so far</h1>",
        f"<p>{_h(report.created)}. Rendered from the run directories under <code>{_h(str(report.runs_dir))}"
        f"</code> by commit <code>{_h(short(report.rendered_by))}</code> of the suite; the finished runs' "
        f"reference commit is <code>{_h(short(report.commit))}</code>.</p>",
        "<nav><ul>",
    ]
    out += [f'<li><a href="#{_h(s.grid.name)}">{_h(s.grid.title)}</a> ({_h(state_summary(s.grid))})</li>'
            for s in report.sections]
    out.append("</ul></nav>")
    for section in report.sections:
        out += _html_section(section, report)
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _html_section(section: Section, report: Report) -> list[str]:
    grid = section.grid
    out = [f'<section id="{_h(grid.name)}">', f"<h2>{_h(grid.title)}</h2>",
           f'<p class="reproduces">{_h(section.experiment.reproduces or "")}</p>']
    if not section.done:
        out.append(f'<p class="not-yet-run">Not yet run: {_h(state_summary(grid))}.</p>')
        return out + _html_commands(section) + ["</section>"]
    out += [render.html(grid), f'<p class="caption">{_h(render.caption(grid))}</p>']
    out += [f'<p class="caption">{_h(line)}</p>' for line in render.signature_lines(grid)]
    # results/stats.py's paired statistics (per column, each method against its baseline) go here.
    note = marked_note(section, report.commit)
    if note:
        out.append(f'<p class="marked">{_h(note)}</p>')
    for stem in section.figures:
        png = base64.b64encode(stem.with_suffix(".png").read_bytes()).decode("ascii")
        out.append(f'<figure><img src="data:image/png;base64,{png}" alt="{_h(stem.name)}">'
                   f"<figcaption>{_h(stem.name)}</figcaption></figure>")
    out.append(f'<p class="states">{_h(state_summary(grid))}.</p>')
    out += _html_commands(section)
    missing = render.not_in_table(grid) + render.collapsed_runs(grid) + [str(p) for p in grid.problems]
    if missing:
        out += ['<ul class="missing">'] + [f"<li>{_h(line)}</li>" for line in missing] + ["</ul>"]
    out += [f"<h3>Provenance: {_h(grid.title)}</h3>", '<table class="provenance environment"><tbody>']
    out += [f"<tr><th>{_h(what)}</th><td>{_h(value)}</td></tr>" for what, value in environment(section, report.commit)]
    out.append("</tbody></table>")
    out += ["<p>Recipe: settings that differ from the official code</p>", '<ul class="recipe">']
    out += [f"<li>{_h(line)}</li>" for line in recipe_differences(section.experiment)] + ["</ul>"]
    header, rows = source_rows(section)
    out += ['<table class="provenance sources">',
            "<thead><tr>" + "".join(f"<th>{_h(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{_h(cell)}</td>" for cell in row) + "</tr>" for row in rows]
    out += ["</tbody></table>", "</section>"]
    return out


def _html_commands(section: Section) -> list[str]:
    if not section.commands:
        return []
    return (['<ul class="commands">']
            + [f"<li><code>{_h(command)}</code>: {_h(what)}</li>" for command, what in section.commands]
            + ["</ul>"])


# -- writing -----------------------------------------------------------------------------------

def compile_pdf(tex: Path) -> str | None:
    """Run pdflatex twice (the contents need the second pass); None, or why there is no PDF."""
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        return "pdflatex not found: install it (bash scripts/install-latex.sh, as root) and run again"
    for _ in range(2):
        done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tex.parent,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=False)
        if done.returncode != 0:
            return f"pdflatex failed (exit {done.returncode}); see {tex.with_suffix('.log')}"
    return None


def write(report: Report, folder: Path) -> tuple[list[Path], str | None]:
    """Write report.html, report.tex and report.pdf into `folder`; the paths, and why no PDF."""
    folder.mkdir(parents=True, exist_ok=True)
    page, tex = folder / "report.html", folder / "report.tex"
    page.write_text(html_page(report), encoding="utf-8")
    tex.write_text(latex_document(report), encoding="utf-8")
    problem = compile_pdf(tex)
    written = [page, tex] + ([] if problem else [folder / "report.pdf"])
    return written, problem


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m results.report",
        description="One PDF and one web page of every experiment, from the run directories.",
    )
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="where the runs are (default: $VASSO_RUNS, else ./runs); must exist")
    parser.add_argument("--out", type=Path, default=Path("outputs"),
                        help="the report goes to OUT/report/ (default: ./outputs)")
    parser.add_argument("--metric", dest="at", choices=AT, default="final",
                        help="the evaluation columns without a paper value show (as `python -m results`)")
    parser.add_argument("--experiments-module", default=os.environ.get("VASSO_EXPERIMENTS_MODULE"),
                        help="module (dotted name or .py path) whose EXPERIMENTS to report instead of "
                        "benchmarks.experiments (env VASSO_EXPERIMENTS_MODULE)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="report this experiment only (repeatable; default: every one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmarks.experiments import get, load

    from .cli import checked_folders

    try:
        experiments = [get(name, args.experiments_module) for name in args.only] or list(
            load(args.experiments_module).values())
        runs_dir = checked_folders(args.runs_dir, args.out)
    except ValueError as exc:
        print(f"python -m results.report: error: {exc}", file=sys.stderr)
        return 2
    given = [("--runs-dir", args.runs_dir), ("--experiments-module", args.experiments_module)]
    options = "".join(f" {flag} {shlex.quote(str(value))}" for flag, value in given if value)
    folder = args.out / "report"
    try:
        report = build(experiments, runs_dir, folder, args.at, options)
    except ExperimentError as exc:  # an experiment laid out by fields its cells lack, ...
        print(f"python -m results.report: error: {exc}", file=sys.stderr)
        return 2
    written, problem = write(report, folder)
    for section in report.sections:
        for skipped in section.grid.problems:
            print(f"skipped {skipped}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    if problem:
        print(f"python -m results.report: no PDF: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
