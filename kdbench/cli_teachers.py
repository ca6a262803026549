"""`kdbench teachers`: the teachers a run distils — shipped with kdbench, or trained into the zoo."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from .cli_options import Named, names, plugin_option
from .errors import UsageError
from .plan import PROFILES, RunConfig


@click.group()
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
    from .shipped import CHECKPOINT, SHIPPED_PROFILES, read_card
    from .zoo import Zoo

    registry = load_registry(plugins)
    click.echo("shipped:")
    for folder, pair_names in _shipped_folders(registry).items():
        card = read_card(folder)
        profiles = getattr(registry.pair(pair_names[0]).obj, "shipped_profiles", SHIPPED_PROFILES)
        if card is None:
            click.echo(f"  {','.join(pair_names)}\n    not shipped yet (the pair trains its teacher)")
            continue
        size = (folder / CHECKPOINT).stat().st_size if (folder / CHECKPOINT).is_file() else 0
        click.echo(f"  {','.join(pair_names)}\n    source=shipped val {card['val_acc'] * 100:.2f}% "
                   f"test {card['test_acc'] * 100:.2f}% epochs={card.get('epochs')} {_size(size)} "
                   f"sha256={card['sha256'][:12]} profiles={','.join(profiles)}")
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
@click.option("--recipe", type=Named("recipe", ["profile", "zoo"]), default="profile", show_default=True,
              help="profile: the profile's teacher, trained into the zoo (what `run` uses when nothing is "
                   "shipped); zoo: the pair's converged recipe, from scratch, as shipped.")
@click.option("--profile", type=Named("profile", PROFILES), default="quick", show_default=True,
              help="With --recipe profile.")
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
    from .worker import CellWorker

    registry = load_registry(plugins)
    pairs_ = names(pairs, "--pairs") or sorted(registry.pairs)
    if recipe == "zoo":
        _train_zoo_recipes(registry, pairs_, out, train_limit, eval_limit, max_steps, note, data_dir, device, quiet)
        return
    worker = CellWorker(RunConfig(profile=profile, data_dir=data_dir, device=device, progress=not quiet), registry)
    worker.zoo.check_writable()
    for name in pairs_:
        pair = registry.pair(name).obj()
        try:
            teacher = worker.teacher(pair, worker.data(pair))
        except KeyboardInterrupt:
            click.echo(f"kdbench: interrupted while training the {name} teacher; teachers already listed above are "
                       "kept in the zoo, this one starts again from step 0 next time", err=True)
            sys.exit(130)
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
    from .env import kdbench_home
    from .shipped import has_recipe, read_card, recipe_steps, shipped_dir, train_recipe

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
