"""The `kdbench` command line: run, report, list, teachers.

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

from .errors import UsageError

EXIT_USAGE = 2
EXIT_CELLS_FAILED = 1


def _names(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


plugin_option = click.option(
    "--plugin", "plugins", multiple=True, metavar="MODULE",
    help="Also load this plugin module (import name or path to a .py file); repeatable.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kdbench")
def cli() -> None:
    """kdbench: which distillation method makes the best student, and what does it cost?

    \b
    Typical use:
      kdbench run --methods student-only,hinton --pairs mlp-hinton --profile smoke --seeds 2 --out runs/smoke
      kdbench report runs/smoke --output leaderboard.md
      kdbench list methods
    """


@cli.command()
@click.option("--methods", help="Comma-separated methods (default: every method).")
@click.option("--pairs", help="Comma-separated teacher/student pairs (default: every pair).")
@click.option("--seeds", type=int, default=1, show_default=True, help="Number of seeds (0..N-1) per cell.")
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME",
              help="Regime of the student's training data: full (default), labels-N (N%% of the labels, "
                   "class-stratified), noise-N (N%% wrong labels), weak-teacher[-N] (teacher trained for N%% "
                   "of its steps); repeatable.")
@click.option("--profile", default="quick", show_default=True,
              help="Size class: smoke (tests), quick (default run), standard (leaderboard), paper (GPU+internet).")
@click.option("--budget-mode", type=click.Choice(["steps", "time"]), default="steps", show_default=True,
              help="Budget each cell by optimizer steps or by wall-clock seconds (teacher forwards included).")
@click.option("--budget-steps", type=int, help="Optimizer steps per cell (default: the profile's).")
@click.option("--budget-seconds", type=float, help="Seconds per cell; needs --budget-mode time.")
@click.option("--set", "sets", multiple=True, metavar="METHOD.KEY=VALUE",
              help="Override a method hyper-parameter, e.g. hinton.temperature=20; repeatable.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/latest"), show_default=True,
              help="Folder for the records (one JSON per cell). Re-running resumes.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Folder with dataset files (also $KDBENCH_DATA).")
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda when available).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Forward passes in fp32 or under bf16 autocast; auto: bf16 on a CUDA GPU that supports it, "
                   "fp32 on CPU. Losses always run in fp32.")
@click.option("--force", is_flag=True, help="Recompute cells that already have a record.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed cell.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Run N cells at once (worker processes sharing the cores; with Ray, concurrent tasks).")
@click.option("--threads", type=int,
              help="Intra-op threads per cell (default: cores / --jobs). A cell's numbers depend on it: "
                   "fix it to get identical records from runs with different --jobs.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine; ray: one Ray task per cell (pip install 'kdbench[ray]').")
@click.option("--ray-address", help="Address of an existing Ray cluster (default: start a local one).")
@click.option("--no-teacher-cache", is_flag=True,
              help="Always run the teacher live (default: logits-only methods reuse cached teacher logits).")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (cells, budgets, teachers, what would be downloaded) and exit; no network.")
@plugin_option
def run(methods: str | None, pairs: str | None, seeds: int, scenarios: Sequence[str], profile: str, budget_mode: str,
        budget_steps: int | None, budget_seconds: float | None, sets: Sequence[str], out: Path,
        data_dir: Path | None, device: str | None, precision: str, force: bool, fail_fast: bool, quiet: bool,
        jobs: int, threads: int | None, executor: str, ray_address: str | None, no_teacher_cache: bool, dry_run: bool,
        plugins: Sequence[str]) -> None:
    """Train and evaluate every (pair, method, seed) cell and write one record per cell."""
    from .plugins import load_registry
    from .report import render_markdown
    from .runner import RunConfig, Runner, plan

    config = RunConfig(
        profile=profile, out=out, budget_mode=budget_mode, budget_steps=budget_steps,
        budget_seconds=budget_seconds, device=device, precision=precision, data_dir=data_dir, force=force,
        fail_fast=fail_fast, progress=not quiet, jobs=jobs, threads=threads, executor=executor,
        ray_address=ray_address, teacher_cache=not no_teacher_cache, plugins=tuple(plugins),
        command=shlex.join(["kdbench", *sys.argv[1:]]),
    )
    registry = load_registry(plugins)
    for broken in registry.broken:
        click.echo(f"kdbench: warning: {broken.error}", err=True)
    cells = plan(registry, _names(methods), _names(pairs), seeds, sets, profile=profile,
                 scenarios=scenarios or ("full",))
    if dry_run:
        from .runner import describe_plan

        click.echo(describe_plan(registry, config, cells))
        return
    summary = Runner(registry, config).run(cells)
    click.echo(render_markdown(summary.records, title=f"kdbench run → {out}"))
    click.echo(f"{len(summary.written)} cells run, {len(summary.reused)} reused from {out}, "
               f"{len(summary.failed)} failed.")
    for r in summary.failed:
        where = f"{r['pair']}/{r['method']}/" + (f"{r['scenario']}/" if r.get("scenario", "full") != "full" else "")
        click.echo(f"FAILED {where}seed{r['seed']}: {r.get('error')}", err=True)
    if summary.not_run:
        click.echo(f"kdbench: stopped at the first failed cell (--fail-fast); {summary.not_run} cells not run",
                   err=True)
    if summary.failed:
        sys.exit(EXIT_CELLS_FAILED)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), help="Write the report here (default: print it).")
@click.option("--format", "fmt", type=click.Choice(["md", "csv"]), default="md", show_default=True)
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path),
              help="Also draw seaborn figures (PNG) into this folder and link them from the report.")
@click.option("--title", default="kdbench results", show_default=True, help="The report's first heading.")
def report(paths: Sequence[Path], output: Path | None, fmt: str, plots_dir: Path | None, title: str) -> None:
    """Tabulate the records under PATHS (folders or files; default: results/).

    The report depends on the records alone: the same records give the same bytes.
    """
    from .fsutil import atomic_write_text
    from .report import render_csv, render_markdown
    from .results import load_records

    paths = list(paths) or [Path("results")]
    for p in paths:
        if not p.exists():
            raise UsageError(f"{p}: no such file or folder")
    records = load_records(paths)
    if not records:
        raise UsageError(f"no kdbench records under {', '.join(map(str, paths))}; run `kdbench run --out DIR` first")
    if fmt == "csv":
        text = render_csv(records)
    else:
        link_from = output.parent if output else Path(".")
        text = render_markdown(records, title=title, plots_dir=plots_dir, link_from=link_from,
                               command="kdbench report")
    if output:
        atomic_write_text(output, text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@cli.command(name="list")
@click.argument("kind", required=False, type=click.Choice(["methods", "pairs", "datasets"]))
@plugin_option
def list_(kind: str | None, plugins: Sequence[str]) -> None:
    """List methods, pairs and datasets with where each came from; broken plugins last."""
    from .plugins import load_registry

    registry = load_registry(plugins)
    for k in [kind] if kind else ["methods", "pairs", "datasets"]:
        click.echo(f"{k}:")
        for name, entry in sorted(getattr(registry, k).items()):
            extra = ""
            if k == "methods":
                extra = f" needs={','.join(sorted(entry.obj.needs))}"
            elif k == "pairs":
                extra = f" dataset={entry.obj.dataset} taps={','.join(sorted(entry.obj.taps))}"
            click.echo(f"  {name:<16} [{entry.origin}]{extra}  {entry.description}")
    if registry.broken:
        click.echo("broken plugins:")
        for b in registry.broken:
            click.echo(f"  BROKEN {b.plugin} [{b.origin}]: {b.error}")


@cli.group()
def teachers() -> None:
    """Teachers: shipped with the built-in pairs, or trained into the zoo ($KDBENCH_HOME/teachers).

    \b
    The quick and standard profiles use a pair's shipped teacher; smoke and the
    weak-teacher scenario train theirs. Reproduce a shipped teacher from scratch with
      kdbench teachers train --pairs mlp-hinton --recipe zoo
    """


def _shipped_folders(registry: Any) -> dict[Path, list[str]]:
    """Every registered pair's shipped-teacher folder, with the pairs that share it."""
    from .shipped import shipped_dir

    folders: dict[Path, list[str]] = {}
    for name, entry in sorted(registry.pairs.items()):
        try:
            folder = shipped_dir(entry.obj())
        except Exception:  # noqa: BLE001 - a broken pair is listed by `kdbench list`
            continue
        if folder is not None:
            folders.setdefault(folder.resolve(), []).append(name)
    return folders


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@teachers.command(name="list")
@plugin_option
def teachers_list(plugins: Sequence[str]) -> None:
    """Shipped and trained teachers: source, accuracy, size and checkpoint sha256."""
    from .plugins import load_registry
    from .shipped import CHECKPOINT, read_card
    from .zoo import Zoo

    registry = load_registry(plugins)
    click.echo("shipped (used by the quick and standard profiles):")
    for folder, names in _shipped_folders(registry).items():
        card = read_card(folder)
        if card is None:
            click.echo(f"  {','.join(names):<30} not shipped yet (the pair trains its teacher)")
            continue
        size = (folder / CHECKPOINT).stat().st_size if (folder / CHECKPOINT).is_file() else 0
        click.echo(f"  {','.join(names):<30} source=shipped val_acc={card['val_acc'] * 100:.2f}% "
                   f"test_acc={card['test_acc'] * 100:.2f}% epochs={card.get('epochs')} "
                   f"size={_size(size)} sha256={card['sha256'][:12]}")
    zoo = Zoo()
    cards = zoo.cards()
    click.echo(f"trained ({zoo.root}):")
    if not cards:
        click.echo("  none")
    for c in cards:
        weights = zoo.root / c["key"] / "model.safetensors"
        size = weights.stat().st_size if weights.is_file() else 0
        click.echo(f"  {c['key']:<30} source=trained profile={c['profile']} test_acc={c['test_acc'] * 100:.2f}% "
                   f"params={c['params']:,} size={_size(size)} sha256={c['sha256'][:12]}")


@teachers.command(name="verify")
@click.option("--dir", "folders", multiple=True, type=click.Path(path_type=Path),
              help="Verify this teacher folder (card.json + checkpoint) instead of the shipped ones; repeatable.")
@plugin_option
def teachers_verify(folders: Sequence[Path], plugins: Sequence[str]) -> None:
    """Check every shipped teacher checkpoint against the sha256 on its card; exit 1 on a mismatch."""
    from .plugins import load_registry
    from .shipped import read_card, verify

    if folders:
        targets = [Path(f) for f in folders]
    else:
        targets = [f for f in _shipped_folders(load_registry(plugins)) if read_card(f) is not None]
    bad = 0
    for folder in targets:
        problems = verify(folder)
        for p in problems:
            click.echo(f"MISMATCH {p}", err=True)
        if not problems:
            click.echo(f"ok {folder}")
        bad += bool(problems)
    if not targets:
        click.echo("no shipped teachers to verify")
    if bad:
        sys.exit(1)


@teachers.command(name="train")
@click.option("--pairs", help="Comma-separated pairs (default: every pair).")
@click.option("--recipe", type=click.Choice(["profile", "zoo"]), default="profile", show_default=True,
              help="profile: the profile's teacher, trained into the zoo (what `run` uses when nothing is "
                   "shipped); zoo: the pair's converged recipe, from scratch, as shipped.")
@click.option("--profile", default="quick", show_default=True, help="With --recipe profile.")
@click.option("--out", type=click.Path(path_type=Path),
              help="With --recipe zoo: where to write card.json and the checkpoint "
                   "(default: $KDBENCH_HOME/recipes/<shipped folder name>).")
@click.option("--train-limit", type=int, help="With --recipe zoo: train on the first N examples (a smoke-sized check).")
@click.option("--eval-limit", type=int, help="With --recipe zoo: evaluate on the first N val / test examples.")
@click.option("--max-steps", type=int, help="With --recipe zoo: stop after N optimizer steps.")
@click.option("--note", default="", help="With --recipe zoo: a note for the card (e.g. whether the machine was shared).")
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--device")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@plugin_option
def teachers_train(pairs: str | None, recipe: str, profile: str, out: Path | None, train_limit: int | None,
                   eval_limit: int | None, max_steps: int | None, note: str, data_dir: Path | None,
                   device: str | None, quiet: bool, plugins: Sequence[str]) -> None:
    """Train the teachers of the given pairs: into the zoo, or a shipped teacher's recipe from scratch."""
    from .plugins import load_registry
    from .runner import RunConfig, Runner

    registry = load_registry(plugins)
    names = _names(pairs) or sorted(registry.pairs)
    if recipe == "zoo":
        _train_zoo_recipes(registry, names, out, train_limit, eval_limit, max_steps, note, data_dir, device, quiet)
        return
    runner = Runner(registry, RunConfig(profile=profile, data_dir=data_dir, device=device, progress=not quiet))
    runner.zoo.check_writable()
    for name in names:
        pair = registry.pair(name).obj()
        teacher = runner.teacher(pair, runner.data(pair))
        click.echo(f"{name}: {teacher.card['key']} source={teacher.card.get('source', 'trained')} "
                   f"test_acc={teacher.card['test_acc'] * 100:.2f}%")


def _train_zoo_recipes(registry: Any, names: list[str], out: Path | None, train_limit: int | None,
                       eval_limit: int | None, max_steps: int | None, note: str, data_dir: Path | None,
                       device: str | None, quiet: bool) -> None:
    import torch
    from tqdm import tqdm

    from .accel import Accel, resolve_device
    from .api import Splits
    from .data import limit
    from .shipped import has_recipe, read_card, recipe_steps, shipped_dir, train_recipe
    from .zoo import kdbench_home

    pairs = [registry.pair(n).obj() for n in names]
    for pair in pairs:
        if not has_recipe(pair) or shipped_dir(pair) is None:
            raise UsageError(f"pair {pair.name!r} has no shipped-teacher recipe (zoo_recipe)")
    if out is not None and len(pairs) > 1:
        raise UsageError("--out names one folder; give one pair with it")
    dev = resolve_device(device)
    accel = Accel.choose(dev, "fp32")
    extra = [f"--{k}={v}" for k, v in (("train-limit", train_limit), ("eval-limit", eval_limit),
                                         ("max-steps", max_steps)) if v is not None]
    done: set[Path] = set()
    for pair in pairs:
        folder = shipped_dir(pair).resolve()  # type: ignore[union-attr]
        if folder in done:
            continue  # pairs that share a teacher (the MiniLM pairs) train it once
        done.add(folder)
        rec = pair.zoo_recipe()
        options = {**pair.dataset_options("standard"), **rec.get("dataset_options", {})}
        splits = registry.dataset(pair.dataset).obj().load(data_dir, **options)
        splits = limit(splits, train_limit, eval_limit)
        splits = Splits(splits.train.to(dev), splits.val.to(dev), splits.test.to(dev), splits.num_classes,
                        splits.fingerprint)
        target = Path(out) if out is not None else kdbench_home() / "recipes" / folder.name
        total = recipe_steps(rec, len(splits.train))
        total = min(total, max_steps) if max_steps else total
        bar = tqdm(total=total, desc=f"teacher {pair.name} (zoo recipe)", disable=quiet, mininterval=5)
        command = shlex.join(["kdbench", "teachers", "train", "--pairs", pair.name, "--recipe", "zoo", *extra])
        try:
            card = train_recipe(pair, splits, accel, target, command=command, max_steps=max_steps, note=note,
                                on_step=lambda s, l: bar.update(1))
        finally:
            bar.close()
        shipped = read_card(folder)
        same = "" if shipped is None else (
            "; identical to the shipped checkpoint" if shipped["sha256"] == card["sha256"]
            else f"; differs from the shipped checkpoint ({shipped['sha256'][:12]})")
        click.echo(f"{pair.name}: {target} val_acc={card['val_acc'] * 100:.2f}% test_acc={card['test_acc'] * 100:.2f}% "
                   f"steps={card['steps']} {card['train_seconds']:.0f}s threads={torch.get_num_threads()} "
                   f"sha256={card['sha256'][:12]}{same}")


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
    except click.exceptions.Abort:
        click.echo("kdbench: interrupted; completed cells are kept, re-run the same command to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("kdbench: interrupted; completed cells are kept, re-run the same command to resume", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"kdbench: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    main()
