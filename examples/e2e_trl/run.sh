#!/usr/bin/env bash
# make e2e: TRL's GRPOTrainer end to end, plug-in vs digamma vs coefgen's default table (docs/e2e.md).
#   bash examples/e2e_trl/run.sh [prepare.py options: --K 4 8 --seeds 5 --steps 500 --task FILE --seed-offset N ...]
# Environment: TRAINERS_VENV (default .venv-trainers, the venv `make test-trainers` builds),
#   E2E_WORK (scratch directory, default .e2e-work), E2E_JOBS (parallel trainer processes, default 2),
#   E2E_OUT (prefix of the JSON and PNG written, default docs/e2e), E2E_DOCS (page whose results
#   section is regenerated; default docs/e2e.md when E2E_OUT is the default, else none).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv
TRAINERS=${TRAINERS_VENV:-.venv-trainers}
WORK=${E2E_WORK:-.e2e-work}
JOBS=${E2E_JOBS:-2}
OUT=${E2E_OUT:-docs/e2e}
if [ -z "${E2E_DOCS+x}" ]; then
  if [ "$OUT" = docs/e2e ]; then DOCS=docs/e2e.md; else DOCS=; fi
else
  DOCS=$E2E_DOCS
fi
if ! "$TRAINERS/bin/python" -c 'import trl, transformers, torch, datasets' 2>/dev/null; then
  echo "e2e: no trainers venv with TRL at $TRAINERS: run 'make test-trainers' once (it builds .venv-trainers)," >&2
  echo "e2e: or set TRAINERS_VENV to a venv with TRL 1.16, transformers and the CPU torch." >&2
  exit 2
fi
case "$(cd "$(dirname "$WORK")" 2>/dev/null && pwd)/$(basename "$WORK")" in
  /|/.|"$PWD"|"$PWD/."|"$HOME") echo "e2e: E2E_WORK=$WORK would delete a directory that is not scratch" >&2; exit 2;;
esac
start=$(date +%s)
rm -rf "$WORK"
"$VENV/bin/python" examples/e2e_trl/prepare.py "$WORK" "$@"
pids=()
for i in $(seq 0 $((JOBS - 1))); do
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 \
    "$TRAINERS/bin/python" -W ignore examples/e2e_trl/train.py "$WORK" --shard "$i/$JOBS" 2>"$WORK/train$i.log" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
if [ $rc -ne 0 ]; then
  echo "e2e: a trainer process failed; its log:" >&2
  tail -n 30 "$WORK"/train*.log >&2
  exit $rc
fi
wall=$(( $(date +%s) - start ))
"$VENV/bin/python" examples/e2e_trl/report.py "$WORK" --out "$OUT" ${DOCS:+--docs "$DOCS"} --wall "$wall"
echo "e2e: $(( $(date +%s) - start )) s (prepare + $JOBS trainer processes + report)"
