"""The docs check: run every ```python and ```console block of README.md and docs/*.md.

Rules (the same for every page):

* ```python: the block is a script, run on its own in a fresh interpreter (so every block can
  be copied and run as it stands); it passes when it exits 0. State what a block computes with
  ``assert`` or ``print`` — printed output is not compared.
* ```console: lines starting with ``$ `` are commands (a trailing ``\\`` continues a command on
  the next line, and a here-document's lines up to its delimiter belong to its command); the
  lines after a command, up to the next ``$ ``, are its expected output
  (stdout and stderr, as a terminal shows them). Output is compared line by line after
  stripping trailing spaces and normalising durations (``0.25s``, ``1m10s`` → ``<T>``); a
  line ``...`` stands for any number of lines, and ``…`` inside a line for any text. A command
  without shown output must exit 0; a command whose shown output matches may exit non-zero
  (error examples show the error line).
* Markers, on the line(s) right before the opening fence:
  ``<!-- docs-check: trainers -->`` run only by tests_trainers/test_docs_trainers.py (needs
  TRL / verl / OpenRLHF); ``<!-- docs-check: skip: REASON -->`` not run;
  ``<!-- docs-check: no-output -->`` run, output not compared (exit 0 still required).
* The blocks of one page run in order in one temporary directory, in which ``tables`` and
  ``docs`` are links to the checkout's: a page's later block may use a file an earlier one wrote.
  ``coefgen`` and ``python`` are the interpreter's own (the checkout's venv).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"^<!--\s*docs-check:\s*(trainers|no-output|skip:\s*(?P<reason>.+?))\s*-->\s*$")
FENCE = re.compile(r"^```(\w+)?\s*$")
TIMEOUT = 120


@dataclasses.dataclass
class Block:
    page: str  # path relative to the checkout
    line: int  # line of the opening fence (1-based)
    lang: str
    text: str
    markers: tuple  # "trainers", "no-output", "skip"
    skip_reason: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[str]:
    docs = os.path.join(ROOT, "docs")
    out = ["README.md"]
    if os.path.isdir(docs):
        out += sorted(os.path.join("docs", f) for f in os.listdir(docs) if f.endswith(".md"))
    return out


def blocks(page: str) -> list[Block]:
    lines = open(os.path.join(ROOT, page), encoding="utf-8").read().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = (m.group(1) or ""), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        markers, reason, k = [], None, start - 1
        while k >= 0 and MARKER.match(lines[k].strip()):
            mm = MARKER.match(lines[k].strip())
            markers.append("skip" if mm.group("reason") else mm.group(1))
            reason = mm.group("reason") or reason
            k -= 1
        if lang in ("python", "console"):
            out.append(Block(page, start + 1, lang, "\n".join(lines[start + 1:j]), tuple(markers), reason))
        i = j + 1
    return out


def all_blocks() -> list[Block]:
    return [b for p in pages() for b in blocks(p)]


def workdir_for(page: str, base: str) -> str:
    """The page's working directory (created once per page, with links to tables/ and docs/)."""
    d = os.path.join(base, re.sub(r"[^A-Za-z0-9_.-]", "_", page))
    if not os.path.isdir(d):
        os.makedirs(d)
        for name in ("tables", "docs"):
            os.symlink(os.path.join(ROOT, name), os.path.join(d, name))
    return d


def environment(python: str = sys.executable) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(python) + os.pathsep + env.get("PATH", "")
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "100",
                "PYTHONPATH": ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")})
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) pairs of a console block."""
    out: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            if out:
                out[-1][1].append(lines[i])
            elif lines[i].strip():
                raise ValueError(f"console block: output line before any command: {lines[i]!r}")
            i += 1
            continue
        cmd = lines[i][2:]
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd[:-1].rstrip() + " " + lines[i].strip()
        here = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", cmd)
        if here:  # a here-document: its lines belong to the command, up to the delimiter
            while i + 1 < len(lines):
                i += 1
                cmd += "\n" + lines[i]
                if lines[i].strip() == here.group(1):
                    break
        out.append((cmd, []))
        i += 1
    return out


_DURATION = re.compile(r"\b(\d+h)?(\d+m)?\d+(\.\d+)?s\b")


def _norm(line: str) -> str:
    return _DURATION.sub("<T>", line.rstrip())


def output_matches(expected: list[str], actual: list[str]) -> bool:
    exp = [_norm(x) for x in expected]
    act = [_norm(x) for x in actual]
    while exp and not exp[-1]:
        exp.pop()
    while act and not act[-1]:
        act.pop()

    def line_ok(e: str, a: str) -> bool:
        if "…" not in e:
            return e == a
        return re.fullmatch(".*".join(re.escape(p) for p in e.split("…")), a) is not None

    def match(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and line_ok(exp[i], act[j]) and match(i + 1, j + 1)

    return match(0, 0)


def run_block(block: Block, workdir: str, python: str = sys.executable) -> None:
    """Run one block; AssertionError with the command, expected and actual output on failure."""
    env = environment(python)
    if block.lang == "python":
        script = os.path.join(workdir, f"block_{block.line}.py")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write(block.text + "\n")
        p = subprocess.run([python, script], cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 0, (f"{block.id}: python block exited {p.returncode}\n--- stdout\n{p.stdout}"
                                   f"\n--- stderr\n{p.stderr[-4000:]}")
        return
    compare = "no-output" not in block.markers
    for cmd, expected in commands(block.text):
        p = subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
        actual = p.stdout.splitlines()
        shown = any(x.strip() for x in expected)
        if compare and shown:
            assert output_matches(expected, actual), (
                f"{block.id}: `{cmd}` (exit {p.returncode}): output differs from the page\n--- shown\n"
                + "\n".join(expected) + "\n--- actual\n" + p.stdout)
        else:
            assert p.returncode == 0, f"{block.id}: `{cmd}` exited {p.returncode}\n{p.stdout[-4000:]}"
