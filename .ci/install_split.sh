#!/usr/bin/env bash
# The base install as a trainer's environment gets it: a fresh venv, `pip install` of this
# checkout with its base dependencies only (numpy), used from a directory outside the checkout.
# Checks: numpy is the only dependency installed; the default tables are inside the package and
# load (sha256 against the package manifest); groups are scored (rewards = t[c] recomputed here
# from the file); coefgen.integrations imports; the `coefgen` command exits 2 with one line
# naming the compiler extra. ~20 s (mostly venv creation and the wheel build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/coefgen-base-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet -c "$root/constraints.txt" "$root" 2>&1 | grep -v "file:///opt/pypi-more" || true
"$work/venv/bin/python" -c "import coefgen" 2>/dev/null || { echo "base install: coefgen did not install" >&2; exit 1; }
mkdir "$work/outside" && cd "$work/outside"
COEFGEN_CHECKOUT="$root" "$work/venv/bin/python" - <<'EOF'
import hashlib, importlib.metadata as md, json, os, sys
import numpy as np
import coefgen, coefgen.runtime as runtime
import coefgen.integrations  # noqa: F401 - numpy only

dists = sorted({d.metadata["Name"].lower() for d in md.distributions()} - {"pip", "setuptools", "wheel"})
assert dists == ["coefgen", "numpy"], f"base install pulled more than numpy: {dists}"
heavy = sorted(m for m in ("click", "scipy", "cvxpy", "mpmath", "yaml", "matplotlib", "flint", "gmpy2") if m in sys.modules)
assert not heavy, f"the runtime imported compiler packages: {heavy}"
pkg = os.path.dirname(coefgen.__file__)
assert "site-packages" in pkg and not pkg.startswith(os.environ["COEFGEN_CHECKOUT"] + os.sep), pkg
data = os.path.join(pkg, "default_tables")
manifest = json.load(open(os.path.join(data, "manifest.json")))
for rec in manifest["files"]:
    raw = open(os.path.join(data, rec["path"]), "rb").read()
    assert hashlib.sha256(raw).hexdigest() == rec["sha256"], rec["path"]
ids = {rec["table_id"]: rec["path"] for rec in manifest["files"]}
kl8 = [i for i in ids if i.startswith("kl-aqp") and i.endswith("-K8") and "-loo-" not in i and "-mean-" not in i]
assert len(kl8) == 1, kl8
table = runtime.load(os.path.join(data, ids[kl8[0]]))
values = json.load(open(os.path.join(data, ids[kl8[0]])))["values"]
answers = ["4", "4", "7", "4", None, "7", "4", "9"] + ["a"] * 8
uids = [0] * 8 + [1] * 8
rewards = table.rewards_for(answers, group_ids=uids)
counts = [4, 4, 2, 4, 1, 2, 4, 1] + [8] * 8
assert [float(r) for r in rewards] == [values[c - 1] for c in counts], rewards
if hasattr(runtime, "default_table"):  # the packaged set by name (coefgen >= 0.3)
    t = runtime.default_table("kl", K=8)
    assert t.sha256 == table.sha256, (t, table)
    fam = runtime.default_family("kl", K=8, baseline="mean")  # a group of 3 gets its own size's table
    t3 = runtime.default_table("kl", K=3, baseline="mean").values
    r = fam.rewards_for(["x", "x", "y"] + answers[:8], group_ids=[5, 5, 5] + uids[:8])
    assert [float(v) for v in r[:3]] == [t3[1], t3[1], t3[0]], r
print(f"base install ok: {len(ids)} default tables in the package, {kl8[0]} scores 2 groups of 8; "
      f"installed: {', '.join(dists)}")
EOF
set +e
msg=$("$work/venv/bin/coefgen" build 2>&1 >/dev/null); rc=$?
set -e
lines=$(printf '%s\n' "$msg" | wc -l)
if [ "$rc" != 2 ] || [ "$lines" != 1 ] || ! printf '%s' "$msg" | grep -q 'pip install "coefgen\[compiler\]"'; then
  echo "base install: \`coefgen\` should exit 2 with one line naming the compiler extra; got exit $rc, $lines line(s):" >&2
  printf '%s\n' "$msg" >&2
  exit 1
fi
echo "base install ok: \`coefgen\` exits 2: $msg"
size=$(du -sm "$work/venv/lib" | cut -f1)
echo "base install size: ${size} MB (venv lib, pip and setuptools included)"
