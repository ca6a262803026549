"""Robust plugin loading: broken third-party plugins are named, marked, and harm nothing else.

Each test installs small fake distributions (a `*.dist-info` folder with `entry_points.txt`
on a temporary sys.path entry, which `importlib.metadata` finds like any installed package)
and loads the registry through the real entry-point group.
"""
from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from kdbench import UsageError
from kdbench.plugins import load_registry

GOOD_METHOD = """
    import torch.nn.functional as F
    from kdbench import Method, hookimpl

    class Good(Method):
        '''A fine method from a third-party package.'''
        name = "{name}"
        def loss(self, student, teacher, labels):
            return {{"ce": F.cross_entropy(student.logits, labels)}}

    @hookimpl
    def kdbench_methods():
        return [Good]
"""


def make_dist(site: Path, dist: str, version: str, entry_points: dict[str, str], sources: dict[str, str]) -> None:
    """A fake installed package: `<dist>-<version>.dist-info` with its entry points, plus its modules."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[kdbench]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for module, source in sources.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """install(dist, version, {entry point: module}, {module: source}) → a fake installed package."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def _install(dist: str, version: str, entry_points: dict[str, str], sources: dict[str, str]) -> None:
        make_dist(site, dist, version, entry_points, sources)
        modules.extend(sources)

    yield _install
    for module in modules:
        sys.modules.pop(module, None)


def invoke(*args: str) -> tuple[int, str, str]:
    """`kdbench ARGS` in this process, through `kdbench.cli.main` (one-line errors and warnings)."""
    from click.testing import CliRunner

    from kdbench.cli import main

    class Main:
        name = "kdbench"

        def main(self, args=None, **_):
            return main(args)

    result = CliRunner().invoke(Main(), list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _broken(registry, plugin: str) -> str:
    msgs = [b.error for b in registry.broken if b.plugin == plugin]
    assert msgs, f"{plugin} is not marked broken: {registry.broken}"
    return " | ".join(msgs)


def _rest_still_works(registry) -> None:
    assert registry.method("hinton").origin == "built-in"
    assert {"hinton", "student-only"} <= set(registry.methods)
    assert "mlp-hinton" in registry.pairs and "fashion-mnist" in registry.datasets


def test_plugin_whose_import_fails_is_named_with_its_entry_point(install):
    install("kaput-kd", "1.0", {"kaput": "kaput_mod"}, {"kaput_mod": "import a_module_that_is_not_there\n"})
    reg = load_registry()
    msg = _broken(reg, "kaput")
    assert "plugin 'kaput' (entry point kaput = kaput_mod, kaput-kd 1.0)" in msg
    assert "import failed: ModuleNotFoundError: No module named 'a_module_that_is_not_there'" in msg
    _rest_still_works(reg)


def test_plugin_whose_hook_raises_is_named_and_its_other_hooks_still_work(install):
    install("raising-kd", "0.3", {"raising": "raising_mod"}, {"raising_mod": """
        from kdbench import hookimpl
        from kdbench_plugins.mlp_hinton import MLPHinton

        class Twin(MLPHinton):
            name = "mlp-twin"

        @hookimpl
        def kdbench_methods():
            raise RuntimeError("cannot find my config")

        @hookimpl
        def kdbench_pairs():
            return [Twin]
    """})
    reg = load_registry()
    msg = _broken(reg, "raising")
    assert "plugin 'raising' (entry point raising = raising_mod, raising-kd 0.3)" in msg
    assert "kdbench_methods() raised RuntimeError: cannot find my config" in msg
    assert reg.pair("mlp-twin").origin == "raising-kd 0.3"
    _rest_still_works(reg)


MALFORMED = {
    "missing-name": ("""
        class NoName(Method):
            def loss(self, student, teacher, labels):
                return {}
        RETURNS = [NoName]
    """, "NoName has no name"),
    "loss-not-callable": ("""
        class NotCallable(Method):
            name = "not-callable"
            loss = 3
        RETURNS = [NotCallable]
    """, "method 'not-callable': loss is not callable (it is int 3)"),
    "loss-missing": ("""
        class NoLoss(Method):
            name = "no-loss"
        RETURNS = [NoLoss]
    """, "method 'no-loss' does not implement loss()"),
    "unknown-taps": ("""
        class Hidden(Method):
            name = "hidden"
            needs = {"logits", "hidden"}
            def loss(self, student, teacher, labels):
                return {}
        RETURNS = [Hidden]
    """, "method 'hidden': needs names unknown taps ['hidden']"),
    "needs-a-string": ("""
        class Stringy(Method):
            name = "stringy"
            needs = "logits"
            def loss(self, student, teacher, labels):
                return {}
        RETURNS = [Stringy]
    """, "method 'stringy': needs must be a set of tap names, not str 'logits'"),
    "not-a-method": ("""
        def loss(student, teacher, labels):
            return {}
        RETURNS = [loss]
    """, "which is not a kdbench.Method subclass"),
    "class-not-list": ("""
        class Single(Method):
            name = "single"
            def loss(self, student, teacher, labels):
                return {}
        RETURNS = Single
    """, "kdbench_methods() returned <class 'malformed_"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_method_is_named_and_the_good_ones_in_the_same_plugin_stay(install, case):
    body, expected = MALFORMED[case]
    module = f"malformed_{case.replace('-', '_')}"
    source = "from kdbench import Method, hookimpl\n" + textwrap.dedent(body) + textwrap.dedent("""
        @hookimpl
        def kdbench_methods():
            return RETURNS
    """)
    install("malformed-kd", "2.0", {"malformed": module}, {module: source})
    install("fine-kd", "1.1", {"fine": "fine_mod"}, {"fine_mod": GOOD_METHOD.format(name="fine")})
    reg = load_registry()
    msg = _broken(reg, "malformed")
    assert f"plugin 'malformed' (entry point malformed = {module}, malformed-kd 2.0)" in msg
    assert expected in msg
    assert reg.method("fine").origin == "fine-kd 1.1"
    _rest_still_works(reg)


def test_pair_with_unknown_taps_or_missing_dataset_is_named(install):
    install("pairs-kd", "0.1", {"pairs": "pairs_mod"}, {"pairs_mod": """
        from kdbench import hookimpl
        from kdbench_plugins.mlp_hinton import MLPHinton

        class Taps(MLPHinton):
            name = "bad-taps"
            taps = {"logits", "feature"}

        class NoData(MLPHinton):
            name = "no-data"
            dataset = "imagenet-22k"

        @hookimpl
        def kdbench_pairs():
            return [Taps, NoData]
    """})
    reg = load_registry()
    msg = _broken(reg, "pairs")
    assert "pair 'bad-taps': taps names unknown taps ['feature']" in msg
    assert "pair 'no-data' needs dataset 'imagenet-22k', which no plugin provides" in msg
    assert "bad-taps" not in reg.pairs and "no-data" not in reg.pairs
    _rest_still_works(reg)


def test_name_registered_by_two_packages_is_refused_naming_both(install):
    install("dup-a", "1.0", {"dup-a": "dup_a_mod"}, {"dup_a_mod": GOOD_METHOD.format(name="dup")})
    install("dup-b", "2.0", {"dup-b": "dup_b_mod"}, {"dup_b_mod": GOOD_METHOD.format(name="dup")})
    reg = load_registry()
    with pytest.raises(UsageError) as info:
        reg.method("dup")
    msg = str(info.value)
    assert "method 'dup' is registered twice" in msg
    assert "plugin 'dup-a' (entry point dup-a = dup_a_mod, dup-a 1.0)" in msg
    assert "plugin 'dup-b' (entry point dup-b = dup_b_mod, dup-b 2.0)" in msg
    assert "dup" not in reg.methods  # the default grid skips it instead of failing
    _rest_still_works(reg)


def test_third_party_cannot_take_a_builtin_name(install):
    install("shadow-kd", "0.9", {"shadow": "shadow_mod"}, {"shadow_mod": GOOD_METHOD.format(name="hinton")})
    reg = load_registry()
    assert "method 'hinton' is a built-in name" in _broken(reg, "shadow")
    assert "entry point shadow = shadow_mod, shadow-kd 0.9" in _broken(reg, "shadow")
    _rest_still_works(reg)


def test_misspelled_hook_is_reported(install):
    install("typo-kd", "0.1", {"typo": "typo_mod"}, {"typo_mod": """
        from kdbench import hookimpl

        @hookimpl
        def kdbench_method():
            return []
    """})
    msg = _broken(load_registry(), "typo")
    assert "implements unknown hook 'kdbench_method'; did you mean 'kdbench_methods'" in msg


def test_hook_with_wrong_arguments_is_reported(install):
    install("sig-kd", "0.1", {"sig": "sig_mod"}, {"sig_mod": """
        from kdbench import hookimpl

        @hookimpl
        def kdbench_record_written(rec):
            pass
    """})
    reg = load_registry()
    msg = _broken(reg, "sig")
    assert "plugin 'sig' (entry point sig = sig_mod, sig-kd 0.1): could not be registered" in msg
    _rest_still_works(reg)


def test_two_packages_may_use_the_same_entry_point_name(install):
    install("same-a", "1.0", {"same": "same_a_mod"}, {"same_a_mod": GOOD_METHOD.format(name="from-a")})
    install("same-b", "1.0", {"same": "same_b_mod"}, {"same_b_mod": GOOD_METHOD.format(name="from-b")})
    reg = load_registry()
    assert {reg.method("from-a").origin, reg.method("from-b").origin} == {"same-a 1.0", "same-b 1.0"}
    assert not [b for b in reg.broken if b.plugin.startswith("same")]


def test_list_shows_origins_and_marks_broken_plugins(install):
    install("fine-kd", "1.1", {"fine": "fine_mod"}, {"fine_mod": GOOD_METHOD.format(name="fine")})
    install("kaput-kd", "1.0", {"kaput": "kaput_mod"}, {"kaput_mod": "raise ImportError('needs CUDA 13')\n"})
    code, out, _ = invoke("list", "methods")
    assert code == 0
    lines = out.splitlines()
    assert any(line.split()[:2] == ["fine", "[fine-kd"] and "1.1]" in line for line in lines), out
    assert any(line.split()[:2] == ["hinton", "[built-in]"] for line in lines), out
    broken = out.split("broken plugins:\n", 1)[1]
    assert broken.count("BROKEN") == 1 and "kaput" in broken
    assert "entry point kaput = kaput_mod" in " ".join(broken.split())  # wrapped to the terminal's width
    assert "needs CUDA 13" in " ".join(broken.split())


SINK = """
    import json
    from kdbench import hookimpl

    @hookimpl
    def kdbench_record_written(record):
        with open({path!r}, "a") as fh:
            fh.write(json.dumps(record) + "\\n")
        record.clear()  # a careless sink: must not affect the record others see
"""

FAILING_SINK = """
    from kdbench import hookimpl

    @hookimpl
    def kdbench_record_written(record):
        raise ConnectionError("tracking server down")
"""


@pytest.fixture(scope="module")
def grid_with_plugins(tmp_path_factory: pytest.TempPathFactory):
    """One smoke grid with a broken plugin installed, a sink and a failing sink: (root, code, stdout, stderr)."""
    root = tmp_path_factory.mktemp("plugin-grid")
    make_dist(root / "site", "kaput-kd", "1.0", {"kaput": "kaput_grid_mod"},
              {"kaput_grid_mod": "raise ImportError('needs CUDA 13')\n"})
    (root / "sink.py").write_text(textwrap.dedent(SINK.format(path=str(root / "seen.jsonl"))))
    (root / "failing_sink.py").write_text(textwrap.dedent(FAILING_SINK))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root / "site"))
        result = invoke("run", "--methods", "student-only,hinton", "--pairs", "mlp-hinton", "--profile", "smoke",
                        "--out", str(root / "runs"), "--quiet",
                        "--plugin", str(root / "sink.py"), "--plugin", str(root / "failing_sink.py"))
    sys.modules.pop("kaput_grid_mod", None)
    return (root, *result)


def test_run_works_with_a_broken_plugin_installed_and_warns(grid_with_plugins):
    root, code, stdout, stderr = grid_with_plugins
    assert code == 0, stderr
    assert "warning: plugin 'kaput' (entry point kaput = kaput_grid_mod, kaput-kd 1.0): import failed" in stderr
    records = [json.loads(p.read_text()) for p in (root / "runs").rglob("*.json")]
    assert sorted(r["method"] for r in records) == ["hinton", "student-only"]
    assert all(r["status"] == "ok" for r in records)


def test_sinks_get_every_record_and_a_failing_sink_loses_nothing(grid_with_plugins):
    root, code, stdout, stderr = grid_with_plugins
    assert code == 0, stderr
    sunk = sorted((json.loads(line) for line in (root / "seen.jsonl").read_text().splitlines()),
                  key=lambda r: r["method"])
    written = sorted((json.loads(p.read_text()) for p in (root / "runs").rglob("*.json")), key=lambda r: r["method"])
    assert sunk == written and len(written) == 2
    failures = [line for line in stderr.splitlines() if "tracking server down" in line]
    assert len(failures) == 2, stderr  # one warning per record, naming the sink and the cell
    failing = f"plugin '--plugin {root / 'failing_sink.py'}': kdbench_record_written failed for mlp-hinton/"
    assert all(failing in line and "(the record is kept): ConnectionError" in line for line in failures), stderr
    assert re.search(r"^hinton +\d", stdout, re.M) and re.search(r"^student-only +\d", stdout, re.M)  # the
    # careless sink emptied only its own copy
