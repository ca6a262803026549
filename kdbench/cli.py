"""The `kdbench` command line: run, report, remeasure, list, teachers.

User mistakes print one line, `kdbench: error: ...`, and exit with code 2.
"""
from __future__ import annotations

import logging
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import click

from .cli_options import Named, names, plugin_option
from .cli_teachers import teachers
from .errors import UsageError
from .executors import EXECUTORS, sigterm_as_interrupt
from .plan import BUDGET_MODES, PRECISIONS, PROFILES, RunConfig, describe_plan, plan

EXIT_USAGE = 2
EXIT_CELLS_FAILED = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kdbench")
def cli() -> None:
    """kdbench: which distillation method makes the best student, and what does it cost?

    \b
    Typical use:
      kdbench run --methods student-only,hinton --pairs mlp-hinton --profile smoke --out runs/s
      kdbench report runs/s                  # compact tables; --format csv|json for programs
      kdbench list methods                   # and: kdbench show hinton
    """


@cli.command()
@click.option("--methods", help="Comma-separated methods (default: every method).")
@click.option("--pairs", help="Comma-separated teacher/student pairs (default: every pair).")
@click.option("--seeds", type=int, default=1, show_default=True, help="Number of seeds (0..N-1) per cell.")
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME",
              help="Regime of the student's training data: full (default), labels-N (N% of the labels, "
                   "class-stratified), noise-N (N% wrong labels), weak-teacher[-N] (teacher trained for N% "
                   "of its steps); repeatable.")
@click.option("--profile", type=Named("profile", PROFILES), default="quick", show_default=True,
              help="Size class: smoke (tests), quick (default run), standard (leaderboard), paper (GPU+internet).")
@click.option("--budget-mode", type=Named("budget mode", BUDGET_MODES), default="steps", show_default=True,
              help="Budget each cell by optimizer steps or by wall-clock seconds (teacher forwards included).")
@click.option("--budget-steps", type=int, help="Optimizer steps per cell (default: the profile's).")
@click.option("--budget-seconds", type=float, help="Seconds per cell; needs --budget-mode time.")
@click.option("--budget-scale", type=float,
              help="Multiply the profile's step budget, e.g. 0.5: the B/2 run of the convergence check.")
@click.option("--match-seconds", metavar="METHOD",
              help="With --budget-mode time: first run METHOD at the profile's step budget, then give every "
                   "cell of the pair its mean training seconds (a time-matched table; timed in this run).")
@click.option("--set", "sets", multiple=True, metavar="METHOD.KEY=VALUE",
              help="Override a method hyper-parameter, e.g. hinton.temperature=20; repeatable.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/latest"), show_default=True,
              help="Folder for the records (one JSON per cell). Re-running resumes.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Folder with dataset files (also $KDBENCH_DATA).")
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda when available).")
@click.option("--precision", type=Named("precision", PRECISIONS), default="auto", show_default=True,
              help="Forward passes in fp32 or under bf16 autocast; auto: bf16 on a CUDA GPU that supports it, "
                   "fp32 on CPU. Losses always run in fp32.")
@click.option("--force", is_flag=True, help="Recompute cells that already have a record.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed cell.")
@click.option("--quiet", "progress", flag_value=False, default=True, help="No progress bars.")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Run N cells at once (worker processes sharing the cores; with Ray, concurrent tasks).")
@click.option("--threads", type=int,
              help="Intra-op threads per cell (default: cores / --jobs). A cell's numbers depend on it: "
                   "fix it to get identical records from runs with different --jobs.")
@click.option("--executor", type=Named("executor", sorted(EXECUTORS)), default="local", show_default=True,
              help="local: this machine; ray: one Ray task per cell (pip install 'kdbench[ray]').")
@click.option("--ray-address", help="Address of an existing Ray cluster (default: start a local one).")
@click.option("--no-teacher-cache", "teacher_cache", flag_value=False, default=True,
              help="Always run the teacher live (default: logits-only methods reuse cached teacher logits).")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (cells, budgets, teachers, what would be downloaded) and exit; no network.")
@click.option("--wide", is_flag=True, help="Print the full results tables (every column) instead of the compact one.")
@click.option("-v", "--verbose", is_flag=True, help="Print a failed cell's whole traceback (also with --fail-fast).")
@plugin_option
def run(methods: str | None, pairs: str | None, seeds: int, scenarios: Sequence[str], sets: Sequence[str],
        dry_run: bool, wide: bool, verbose: bool, **options: Any) -> None:
    """Train and evaluate every (pair, method, seed) cell and write one record per cell.

    Every other option is a field of `kdbench.plan.RunConfig` of the same name."""
    config = RunConfig.from_options(options, command=shlex.join(["kdbench", *sys.argv[1:]]))
    method_names, pair_names = names(methods, "--methods"), names(pairs, "--pairs")
    if config.progress and sys.stderr.isatty():  # a terminal sees progress from the first second
        click.echo("kdbench: loading plugins, models and data…", err=True)
    from .plugins import load_registry
    from .report import render_markdown, render_terminal
    from .runner import Runner

    registry = load_registry(config.plugins)
    for broken in registry.broken:
        click.echo(f"kdbench: warning: {broken.error}", err=True)
    cells = plan(registry, method_names, pair_names, seeds, sets, profile=config.profile,
                 scenarios=scenarios or ("full",))
    runner = Runner(registry, config, notify=lambda line: click.echo(f"kdbench: {line}", err=True))
    runner.check(cells)  # --device, --precision, --out and the zoo, as a run would check them
    if dry_run:
        click.echo(describe_plan(registry, config, cells))
        return
    try:
        with sigterm_as_interrupt():
            summary = runner.run(cells)
    except KeyboardInterrupt:
        click.echo("kdbench: interrupted; completed cells are kept, re-run the same command to resume", err=True)
        sys.exit(130)
    title = f"kdbench run → {config.out}"
    click.echo(render_markdown(summary.records, title=title) if wide else render_terminal(summary.records, title))
    _summarise(summary, config.out, verbose or config.fail_fast)


def _summarise(summary: Any, out: Path, tracebacks: bool) -> None:
    """The run's last lines: counts, each failed cell with where it broke, and exit 1 when any failed."""
    click.echo(f"{len(summary.written)} cells run, {len(summary.reused)} reused from {out}, "
               f"{len(summary.failed)} failed.")
    for r in summary.failed:
        where = f"{r['pair']}/{r['method']}/" + (f"{r['scenario']}/" if r.get("scenario", "full") != "full" else "")
        click.echo(f"FAILED {where}seed{r['seed']}: {r.get('error')}", err=True)
        if tracebacks and r.get("traceback"):
            click.echo(r["traceback"].rstrip(), err=True)
        elif r.get("error_at"):
            click.echo(f"    at {r['error_at']}", err=True)
    if summary.failed and not tracebacks:
        click.echo("kdbench: -v prints whole tracebacks; each failed record keeps its own under \"traceback\"",
                   err=True)
    if summary.not_run:
        click.echo(f"kdbench: stopped at the first failed cell (--fail-fast); {summary.not_run} cells not run",
                   err=True)
    if summary.failed:
        sys.exit(EXIT_CELLS_FAILED)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), help="Write the report here (default: print it).")
@click.option("--format", "fmt", type=Named("format", ["md", "csv", "json"]), default="md", show_default=True,
              help="md: tables (compact on a terminal, full in a file); csv, json: one row per pair and method, "
                   "every statistic a number (accuracies and Δ in points).")
@click.option("--wide", is_flag=True, help="Print the full markdown tables (every column) to the terminal.")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path),
              help="Also draw seaborn figures (PNG) into this folder and link them from the report.")
@click.option("--title", default="kdbench results", show_default=True, help="The report's first heading.")
def report(paths: Sequence[Path], output: Path | None, fmt: str, wide: bool, plots_dir: Path | None,
           title: str) -> None:
    """Tabulate the records under PATHS (folders or files; default: results/).

    The report depends on the records and the installed plugins alone: the same
    records give the same bytes.
    """
    from .fsutil import atomic_write_text
    from .report import render_csv, render_json, render_markdown, render_terminal
    from .results import load_records, mixed_setups

    paths = list(paths) or [Path("results")]
    for p in paths:
        if not p.exists():
            raise UsageError(f"{p}: no such file or folder")
    records = load_records(paths)
    if not records:
        raise UsageError(f"no kdbench records under {', '.join(map(str, paths))}; run `kdbench run --out DIR` first")
    mixed = mixed_setups(records)
    if mixed:
        raise UsageError(f"{mixed[0]}: its teacher or student changed and new cells ran beside the old records; "
                         "report each setup from its own folder (move the older records out)")
    if fmt in ("csv", "json"):
        text = (render_csv if fmt == "csv" else render_json)(records)
    elif not (output or wide or plots_dir):
        text = render_terminal(records, title)
    else:
        link_from = output.parent if output else Path(".")
        text = render_markdown(records, title=title, plots_dir=plots_dir, link_from=link_from,
                               command="kdbench report")
    if output:
        atomic_write_text(output, text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--pairs", help="Comma-separated pairs (default: every pair with ok records under OUT).")
@click.option("--threads", type=int, help="Intra-op threads to measure at (default: those the cells ran with).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Folder with dataset files (also $KDBENCH_DATA).")
@plugin_option
def remeasure(out: Path, pairs: str | None, threads: int | None, data_dir: Path | None,
              plugins: Sequence[str]) -> None:
    """Measure each pair's costs again and write them into its records under OUT.

    Costs (params, FLOPs, latency, speedup, sizes) depend on the architectures alone, so a
    measurement disturbed by other work on the cores is mended without retraining: the
    accuracies stay, the old costs are kept under "costs_remeasured". Run it on an idle
    machine, then `kdbench report` again.
    """
    from .plugins import load_registry
    from .remeasure import remeasure as remeasure_costs

    base = RunConfig(data_dir=data_dir, threads=threads, plugins=tuple(plugins),
                     command=shlex.join(["kdbench", *sys.argv[1:]]))
    done = remeasure_costs(load_registry(plugins), out, names(pairs, "--pairs"), base=base,
                           notify=lambda line: click.echo(f"kdbench: {line}", err=True))
    for r in done:
        old = sorted({f"{a:.2f}× / {b:.2f}×" for a, b in r.before})
        click.echo(f"{r.profile} {r.pair}: speedup bs1 / bsN {r.speedup_bs1:.2f}× / {r.speedup_bsN:.2f}× at "
                   f"{r.threads} thread(s); {len(r.before)} records rewritten (were {', '.join(old) or '—'})")
        for why in r.left:
            click.echo(f"  left alone: {why}")


@cli.command(name="list")
@click.argument("kind", required=False, type=Named("kind", ["methods", "pairs", "datasets"]))
@click.option("--hparams", is_flag=True, help="With each method, its hyper-parameters and their sources.")
@plugin_option
def list_(kind: str | None, hparams: bool, plugins: Sequence[str]) -> None:
    """List methods, pairs and datasets with where each came from; broken plugins last."""
    from .listing import render_list, render_method
    from .plugins import load_registry

    registry = load_registry(plugins)
    click.echo(render_list(registry, [kind] if kind else ["methods", "pairs", "datasets"]))
    if hparams:
        for _, entry in sorted(registry.methods.items()):
            click.echo("\n" + render_method(entry))


@cli.command()
@click.argument("method")
@plugin_option
def show(method: str, plugins: Sequence[str]) -> None:
    """One method: what it reads, its hyper-parameters, their defaults, types and sources."""
    from .listing import render_method
    from .plugins import load_registry

    click.echo(render_method(load_registry(plugins).method(method)))


cli.add_command(teachers)


def main(argv: Sequence[str] | None = None) -> Any:
    """Entry point: one-line errors with exit code 2 for user mistakes; kdbench's own
    warnings (a corrupt teacher checkpoint, a torn record) as one line each."""
    # a CUDA build of torch on a machine without CUDA logs a warning on import; expected here
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        default_show = warnings.showwarning

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            if Path(filename).resolve().parent == Path(__file__).resolve().parent:
                click.echo(f"kdbench: warning: {message}", err=True)
            else:
                default_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        return _main(argv)


def _main(argv: Sequence[str] | None) -> Any:
    try:
        return cli.main(args=argv, prog_name="kdbench", standalone_mode=False)
    except UsageError as exc:
        click.echo(f"kdbench: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:  # bare `kdbench`
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        click.echo(f"kdbench: error: {exc.format_message()}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("kdbench: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"kdbench: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    main()
