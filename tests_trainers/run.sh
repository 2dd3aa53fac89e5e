#!/usr/bin/env bash
# make test-trainers: the trainer integrations tested through TRL's, verl's and OpenRLHF's own
# code, in a separate venv (.venv-trainers) pinned by tests_trainers/requirements.txt.
# torch comes only from the machine's local CPU wheel; without one the target is SKIPPED
# (printed), never run against a downloaded multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${TRAINERS_VENV:-.venv-trainers}
STAMP=$VENV/.installed
TORCH=2.13.0
start=$(date +%s)

wheel=$(ls /opt/wheels/torch-${TORCH}+cpu-cp311-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  echo "SKIPPED: test-trainers: no local CPU torch wheel (/opt/wheels/torch-${TORCH}+cpu-cp311-*.whl) on this machine;"
  echo "SKIPPED: the TRL / verl / OpenRLHF integration tests did not run."
  exit 0
fi
if [ "$($PYTHON -c 'import sys; print(sys.version_info[:2] == (3, 11))')" != True ]; then
  echo "SKIPPED: test-trainers: the local torch wheel is for CPython 3.11, $PYTHON is $($PYTHON -V 2>&1)."
  exit 0
fi

if [ ! -f "$STAMP" ] || [ tests_trainers/requirements.txt -nt "$STAMP" ]; then
  rm -rf "$VENV"
  $PYTHON -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # torch first, from the local file: every later range that 2.13.0 satisfies installs nothing more
  "$VENV/bin/pip" install --quiet "$wheel"
  "$VENV/bin/pip" install --quiet -r tests_trainers/requirements.txt
  # verl and OpenRLHF pin GPU-only packages (vllm, flash-attn, deepspeed): --no-deps, their
  # imports on the tested paths are in requirements.txt
  "$VENV/bin/pip" install --quiet --no-deps verl==0.9.1 openrlhf==0.11.2 transferqueue==0.1.10 hydra-core==1.3.8 \
    torchdata==0.11.0 peft==0.21.2
  "$VENV/bin/python" - <<'PY'
import importlib.metadata as md, sys
torch = md.version("torch")
cuda = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith(("nvidia-", "triton")))
if torch != "2.13.0+cpu" or cuda:
    sys.exit(f"test-trainers: expected the local CPU torch 2.13.0+cpu and no CUDA packages, got torch {torch}, {cuda}")
PY
  touch "$STAMP"
fi
echo "test-trainers: $("$VENV/bin/python" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("trl", "verl", "openrlhf", "transformers", "torch")))')"
rc=0
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests_trainers || rc=$?
echo "test-trainers: $(( $(date +%s) - start )) s"
exit $rc
