"""Docs that cannot go stale: every ```python and ```console block of README.md and docs/*.md
runs here, and shown output is compared with fresh output (rules: tests/docs_check.py).
Blocks marked ``<!-- docs-check: trainers -->`` run in tests_trainers/test_docs_trainers.py.

Also: the README stays short, the docs link only inside the repository, and every relative
link points to a file that exists.
"""

from __future__ import annotations

import os
import re

import pytest

from docs_check import ROOT, all_blocks, pages, run_block, workdir_for

BLOCKS = all_blocks()


@pytest.fixture(scope="module")
def workbase(tmp_path_factory):
    return str(tmp_path_factory.mktemp("docs"))


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block(block, workbase):
    if "skip" in block.markers:
        pytest.skip(f"docs-check: skip: {block.skip_reason}")
    if "trainers" in block.markers:
        pytest.skip("docs-check: trainers (tests_trainers/test_docs_trainers.py)")
    run_block(block, workdir_for(block.page, workbase))


def test_markers_are_well_formed():
    bad = []
    for page in pages():
        lines = open(os.path.join(ROOT, page), encoding="utf-8").read().splitlines()
        for i, line in enumerate(lines):
            if "docs-check" not in line or not line.strip().startswith("<!--"):
                continue
            if not re.fullmatch(r"<!--\s*docs-check:\s*(trainers|no-output|skip:\s*\S.*?)\s*-->", line.strip()):
                bad.append(f"{page}:{i + 1}: {line.strip()}")
                continue
            j = i + 1
            while j < len(lines) and lines[j].strip().startswith("<!-- docs-check"):
                j += 1
            if j >= len(lines) or not re.match(r"```(python|console)\s*$", lines[j]):
                bad.append(f"{page}:{i + 1}: marker not right before a ```python or ```console fence")
    assert not bad, "\n".join(bad)


def test_command_examples_are_console_blocks():
    """A block showing `$ command` lines is a ```console block (so the docs check runs it)."""
    bad = []
    for page in pages():
        lines = open(os.path.join(ROOT, page), encoding="utf-8").read().splitlines()
        fence = None
        for i, line in enumerate(lines):
            if line.startswith("```"):
                fence = None if fence is not None else (line[3:].strip(), i + 1)
            elif fence is not None and fence[0] != "console" and line.startswith("$ "):
                bad.append(f"{page}:{fence[1]}: a ```{fence[0]} block with `$ ` command lines: make it ```console")
    assert not bad, "\n".join(sorted(set(bad)))


def test_readme_is_short():
    n = len(open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines())
    assert n <= 300, f"README.md has {n} lines (at most 300: move detail to docs/)"


def test_readme_links_every_docs_page():
    """Nothing in docs/ is orphaned: the README's "Where the rest lives" links every page."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    missing = [p for p in pages()[1:] if f"]({p})" not in text]
    assert not missing, f"README.md does not link: {missing}"


def test_readme_layout_names_every_module():
    """The README's layout lists every module of the package (a new module must be placed)."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    layout = text[text.index("## Layout"):]
    pkg = os.path.join(ROOT, "coefgen")
    names = [f for f in os.listdir(pkg) if (f.endswith(".py") or f.endswith(".yaml")) and f != "__init__.py"]
    names += [d + "/" for d in os.listdir(pkg) if os.path.isdir(os.path.join(pkg, d)) and not d.startswith("__")]
    missing = sorted(n for n in names if not re.search(r"(?<![\w.])" + re.escape(n), layout))
    assert not missing, f"README.md's Layout does not mention: {missing}"


def test_docs_point_inside_the_repository():
    """No dead references: nothing outside the repository, every relative link resolves."""
    bad = []
    for page in pages():
        text = open(os.path.join(ROOT, page), encoding="utf-8").read()
        for pat in (r"\.\./shared", r"DESIGN(\.md| ?§)", r"\bissue \d+\b", r"\bthe issue('s)? (notes|bars)\b"):
            for m in re.finditer(pat, text):
                bad.append(f"{page}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)!r}")
        for m in re.finditer(r"\]\(([^)#\s]+)(#[^)]*)?\)", text):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), target))
            if not path.startswith(ROOT + os.sep) or not os.path.exists(path):
                bad.append(f"{page}: link to {target} (no such file in the repository)")
    assert not bad, "\n".join(bad)


def test_console_parsing_and_matching():
    """The harness itself: continuation lines, '...' and '…' wildcards, durations."""
    from docs_check import commands, output_matches

    cmds = commands("$ coefgen solve \\\n    -d kl --K 8\nwrote x (0.25s)\n$ echo hi\nhi")
    assert cmds == [("coefgen solve -d kl --K 8", ["wrote x (0.25s)"]), ("echo hi", ["hi"])]
    assert commands("$ cat > a <<'EOF'\nx\nEOF\n$ cat a\nx") == [("cat > a <<'EOF'\nx\nEOF", []), ("cat a", ["x"])]
    assert output_matches(["wrote x (0.25s)"], ["wrote x (1m02s)  "])
    assert output_matches(["a", "...", "z"], ["a", "b", "c", "z"]) and output_matches(["a", "...", "z"], ["a", "z"])
    assert not output_matches(["a", "z"], ["a", "b", "z"])
    assert output_matches(["sha256 …)"], ["sha256 0123abcd)"]) and not output_matches(["x"], ["y"])
