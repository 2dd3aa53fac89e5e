"""No long silences: build/check print a heartbeat while a big table solves; frontier reports
each point; verify of a manifest says how much it checked."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

from coefgen.build import Progress


class _Req:
    def __init__(self, name, cost=1.0):
        self.table_id, self._cost = name, cost

    def cost(self):
        return self._cost


def test_heartbeat_off_a_terminal(monkeypatch):
    monkeypatch.setattr(Progress, "HEARTBEAT_SECONDS", 0.3)
    out = io.StringIO()
    p = Progress([_Req("a"), _Req("b")], "check", False, out)
    p.redraw()
    time.sleep(1.6)  # the ticker thread writes at ~1 s: one heartbeat before anything finishes
    p.finished(_Req("a"), 1.6, True)
    p.finished(_Req("b"), 0.0, True)
    time.sleep(1.2)  # nothing more once every table is done
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("check: 0/2 table(s) done, ") and "ETA ?" in lines[0]
    assert lines[-2:] == ["[1/2] a: solved in 1.60s", "[2/2] b: solved in 0.00s"]
    assert all("table(s) done" in x for x in lines[:-2])


def test_quiet_prints_nothing(monkeypatch):
    monkeypatch.setattr(Progress, "HEARTBEAT_SECONDS", 0.1)
    out = io.StringIO()
    p = Progress([_Req("a")], "build", True, out)
    p.redraw()
    time.sleep(1.2)
    p.finished(_Req("a"), 1.0, True)
    p.close()
    assert out.getvalue() == ""


def test_frontier_reports_every_step():
    from coefgen.frontier import frontier_points, frontier_steps
    from coefgen.rewards import parse_reward

    reward = parse_reward("kl")
    steps = frontier_steps(reward, taus=[2, 10])
    seen = []
    points = frontier_points(reward, 6, taus=[2, 10], on_step=lambda i, sec, ok: seen.append((i, ok)))
    assert [i for i, _ in seen] == list(range(len(steps)))
    assert len(points) == 5 and [s.table_id for s in steps][:3] == ["minimax level E*_K", "aqp tau=2", "aqp tau=10"]


def test_frontier_command_prints_a_line_per_point(tmp_path, coefgen_cmd):
    out = subprocess.run(coefgen_cmd + ["frontier", "-d", "kl", "--K", "6", "-o", str(tmp_path / "f.png")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines[0].startswith("[ 1/14] minimax level E*_K: solved in ")
    assert lines[-2].startswith("[14/14] minimax table: ") and lines[-1].startswith("wrote ")


def test_verify_manifest_prints_counts(tmp_path, coefgen_cmd):
    spec = tmp_path / "s.yaml"
    spec.write_text("output: out\nformats: [json, c]\ntables:\n  - divergence: euclidean\n    estimator: exact\n    K: 2..3\n")
    subprocess.run(coefgen_cmd + ["build", "-c", str(spec), "-q"], check=True)
    manifest = tmp_path / "out" / "manifest.json"
    n_files = len(json.loads(manifest.read_text())["files"])
    out = subprocess.run(coefgen_cmd + ["verify", str(manifest)], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout == f"ok {manifest}: {n_files} file(s) intact, the claims of 2 table(s) re-proven\n"
    assert n_files == 5  # 2 JSON + 2 headers + the aggregate header


def test_build_ends_with_the_set_and_the_next_line(tmp_path, coefgen_cmd):
    spec = tmp_path / "s.yaml"
    spec.write_text("output: out\ntables:\n  - divergence: euclidean\n    estimator: exact\n    K: [2, 3, 4, 8]\n"
                    "  - divergence: kl\n    estimator: plugin\n    K: 5\n")
    out = subprocess.run(coefgen_cmd + ["build", "-c", str(spec), "-j", "1"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    tail = out.stderr.splitlines()[-4:]
    assert tail == ["the set:", "  euclidean-exact  K = 2..4, 8", "  kl-plugin        K = 5",
                    'next, in a trainer: coefgen.runtime.load("out/euclidean-exact-K2.json")']
