"""The two installs: what a trainer imports (numpy only) and what compiles.

* the runtime side (coefgen/runtime.py, coefgen/payload.py, coefgen/integrations/*) imports
  nothing outside the standard library, numpy and itself (read from the source, so a new import
  anywhere in it fails here, not in a user's Ray worker); torch and the trainers only lazily
  (inside functions), and the two modules that subclass a trainer's classes their trainer;
* importing it in a fresh interpreter loads no compiler package;
* coefgen/default_tables/ is exactly the JSON part of tables/ (byte for byte) with its manifest;
* pyproject.toml: base dependency numpy only; the compiler extra; the data in the package;
* the `coefgen` command without the compiler extra: exit 2, one line naming the extra.

The fresh-venv check of the same (`pip install` of the checkout, used from another directory)
is .ci/install_split.sh, run by .ci/run.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

PKG = os.path.join(ROOT, "coefgen")
STDLIB = set(sys.stdlib_module_names)
TRAINERS = {"verl", "openrlhf", "trl"}
# imports the runtime side may make inside functions (a trainer's environment has them)
LAZY_OK = {"torch", "accelerate", "transformers"} | TRAINERS
COMPILER = ["click", "scipy", "cvxpy", "clarabel", "mpmath", "gmpy2", "flint", "yaml", "matplotlib"]


def _integration_files():
    d = os.path.join(PKG, "integrations")
    return sorted(os.path.join("integrations", f) for f in os.listdir(d) if f.endswith(".py"))


def _trainer_module(rel: str) -> bool:
    """A module a trainer loads from its own configuration: it subclasses that trainer's
    classes, so it imports the trainer (and what the trainer brings: torch, ...) at module level."""
    return any(at_top and not level and module.split(".")[0] in TRAINERS
               for module, level, at_top, _ in _imports(os.path.join(PKG, rel)))


def runtime_files():
    """The runtime side: runtime.py, payload.py and every integration module except those a
    trainer loads itself (``import coefgen.integrations`` must never import those)."""
    return ["runtime.py", "payload.py"] + [f for f in _integration_files() if not _trainer_module(f)]


def _imports(path: str):
    """(module name or relative target, level, at module level?) for every import in the file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    top = set()
    for node in tree.body:  # module level, including inside module-level if/try blocks
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ():
            top.add(id(sub))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((alias.name, 0, id(node) in top, None))
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", node.level, id(node) in top, [a.name for a in node.names]))
    return out


def _resolve(rel_file: str, module: str, level: int, names) -> list[str]:
    """coefgen-relative file paths a relative import refers to (module or its names)."""
    base = os.path.dirname(rel_file).split(os.sep) if os.path.dirname(rel_file) else []
    base = base[:len(base) - (level - 1)] if level > 1 else base
    parts = base + (module.split(".") if module else [])
    cands = []
    for extra in ([[]] if module else []) + [[n] for n in (names or [])]:
        p = os.path.join(*(parts + extra)) if parts + extra else ""
        for c in (p + ".py", os.path.join(p, "__init__.py")):
            if p and os.path.isfile(os.path.join(PKG, c)):
                cands.append(c)
    return cands


def _closure():
    """Every coefgen file reachable from the runtime side by module-level imports."""
    seen, todo = set(), runtime_files()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for module, level, at_top, names in _imports(os.path.join(PKG, f)):
            if not at_top:
                continue
            if level:
                todo += _resolve(f, module, level, names)
            elif module.split(".")[0] == "coefgen":
                todo += _resolve("x.py", module[len("coefgen"):].lstrip("."), 1, names)
    return sorted(seen)


def test_runtime_side_imports_numpy_and_stdlib_only():
    files = _closure()
    assert {"runtime.py", "payload.py", "integrations/__init__.py", "integrations/trl.py"} <= set(files)
    listed = set(runtime_files())
    bad = []
    for f in files:
        if _trainer_module(f):
            bad.append(f"{f}: imports a trainer at module level but is imported by the runtime side")
            continue
        for module, level, at_top, _ in _imports(os.path.join(PKG, f)):
            root = module.split(".")[0]
            if level or root in ("coefgen", "__future__", "numpy") or root in STDLIB:
                continue
            if at_top:
                bad.append(f"{f}: module-level import of {module}")
            elif f in listed and root not in LAZY_OK:
                bad.append(f"{f}: import of {module} (a trainer's environment may not have it)")
    assert not bad, "the numpy-only runtime imports more:\n" + "\n".join(bad)
    # the compiler side must not sneak in through a shared helper module
    assert not {"compiler.py", "certify.py", "cli.py", "build.py", "spec.py", "rewards.py"} & set(files), files


def test_trainer_modules_are_only_loaded_by_the_trainer():
    """verl_reward_loop, openrlhf_agent, ...: present, and not imported by coefgen.integrations."""
    trainer_mods = [f for f in _integration_files() if _trainer_module(f)]
    assert "integrations/verl_reward_loop.py" in trainer_mods and "integrations/openrlhf_agent.py" in trainer_mods
    assert not set(trainer_mods) & set(_closure())


def test_runtime_import_loads_no_compiler_package():
    code = ("import sys, coefgen.runtime, coefgen.payload, coefgen.integrations, coefgen.package_data\n"
            f"print(sorted(m for m in {COMPILER!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_package_tables_are_the_json_part_of_tables():
    from coefgen.package_data import PACKAGE_TABLES, package_files

    tables = os.path.join(ROOT, "tables")
    want = package_files(tables)
    have = {f: open(os.path.join(PACKAGE_TABLES, f), "rb").read() for f in os.listdir(PACKAGE_TABLES)}
    assert sorted(have) == sorted(want), "coefgen/default_tables/ differs from tables/: run `make run` and commit"
    for name in want:
        assert have[name] == want[name], f"coefgen/default_tables/{name} differs from tables/: run `make run`"
    # independently of package_files: every JSON of tables/ is there byte for byte, nothing else
    jsons = sorted(f for f in os.listdir(tables) if f.endswith(".json") and f != "manifest.json")
    assert sorted(have) == sorted(jsons + ["manifest.json"])
    for f in jsons:
        assert have[f] == open(os.path.join(tables, f), "rb").read(), f


def test_package_manifest_checks_and_loads():
    """What a loader does with the package copy: sha256 per file, then runtime.load."""
    import hashlib

    from coefgen.package_data import PACKAGE_TABLES
    from coefgen.runtime import load

    doc = json.load(open(os.path.join(PACKAGE_TABLES, "manifest.json")))
    full = json.load(open(os.path.join(ROOT, "tables", "manifest.json")))
    assert doc["schema"] == full["schema"] and doc["generator_version"] == full["generator_version"]
    assert [r for r in full["files"] if r["format"] == "json"] == doc["files"]
    for rec in doc["files"]:
        raw = open(os.path.join(PACKAGE_TABLES, rec["path"]), "rb").read()
        assert hashlib.sha256(raw).hexdigest() == rec["sha256"]
        assert rec["path"] == rec["table_id"] + ".json"
    kl8 = [r for r in doc["files"] if r["table_id"].startswith("kl-aqp") and r["table_id"].endswith("-K8")]
    t = load(os.path.join(PACKAGE_TABLES, kl8[0]["path"]))
    assert t.K == 8 and t.divergence == "kl"


def test_sync_is_exact_and_removes_stale(tmp_path):
    from coefgen.package_data import package_files, sync

    dest = tmp_path / "pkg"
    dest.mkdir()
    (dest / "stale-K3.json").write_text("{}")
    (dest / "keep.txt").write_text("not ours")
    written, removed = sync(os.path.join(ROOT, "tables"), str(dest))
    assert removed == ["stale-K3.json"] and (dest / "keep.txt").exists()
    want = package_files(os.path.join(ROOT, "tables"))
    assert sorted(written) == sorted(want)
    assert sync(os.path.join(ROOT, "tables"), str(dest)) == ([], [])  # idempotent


def _pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    return tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))


def test_pyproject_declares_the_split():
    doc = _pyproject()
    proj = doc["project"]
    assert [d.split(">")[0].split("=")[0] for d in proj["dependencies"]] == ["numpy"]
    extra = {d.split(">")[0].split("=")[0] for d in proj["optional-dependencies"]["compiler"]}
    assert extra == {"click", "scipy", "cvxpy", "clarabel", "mpmath", "gmpy2", "python-flint", "pyyaml", "matplotlib"}
    assert proj["license"] == "MIT"  # SPDX string: no setuptools deprecation warning at install
    assert "default_tables/*.json" in doc["tool"]["setuptools"]["package-data"]["coefgen"]
    from coefgen.__main__ import COMPILER_MODULES

    assert set(COMPILER_MODULES.values()) == extra


def test_command_without_compiler_extra_exits_2_one_line():
    """`coefgen` with click and scipy hidden (as in a base install): one line naming the extra."""
    code = ("import sys, importlib.abc\n"
            "class Hide(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('click', 'scipy'): raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Hide())\n"
            "from coefgen.__main__ import main\n"
            "main(['--help'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert 'pip install "coefgen[compiler]"' in lines[0] and "missing: click, scipy" in lines[0]


def test_command_with_compiler_extra_runs(coefgen_cmd):
    out = subprocess.run([sys.executable, "-m", "coefgen", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.startswith("coefgen, version"), out
