# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow docs-check test-trainers bench study study-baselines e2e venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[compiler,test]'
	touch $(STAMP)

venv: $(STAMP)

## make run: set up, then build the embedded default table set into tables/ (incremental: a fresh
## clone has it committed, so this verifies it is up to date and refreshes coefgen/default_tables/,
## the copy inside the package); ends with what the set holds and the line a trainer uses next
run: $(STAMP)
	$(VENV)/bin/coefgen build --out tables

## make test: set up, then run the test suite (a line per test file as it runs, the slowest
## tests at the end; includes the docs check: every example of README.md and docs/*.md)
test: $(STAMP)
	$(PY) -m pytest --durations=8

## make docs-check: only the examples of README.md and docs/*.md, run and compared with their shown output
docs-check: $(STAMP)
	$(PY) -m pytest tests/test_docs.py

## make test-slow: the slow loops left out of `make test` (a SIGTERM loop over parallel builds, ~3 min)
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

## make test-trainers: the trainer integrations through TRL's, verl's and OpenRLHF's own code
## (separate venv .venv-trainers; SKIPPED, loudly, without the machine's local CPU torch wheel)
test-trainers:
	bash tests_trainers/run.sh

## make bench: timings and accuracy figures (long); writes docs/benchmarks.json, then regenerates from it alone
## the measured table of README.md and docs/benchmarks.md (options: BENCH_ONLY=targets, BENCH_NOTE="loaded machine")
bench: $(STAMP)
	$(PY) bench/run_all.py
	$(PY) bench/run_all.py --from-json docs/benchmarks.json --update-page

## make study: the game study behind the default kl tables (README "Choosing a table"; ~20 min on 2 cores)
study: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) bench/study_game.py --cache .study-cache

## make study-baselines: the default loo/mean tables under the trainer's baseline, and GRPO's std normalisation
## (docs/choosing-a-table.md "Under the trainer's baseline"; ~16 min on one core)
study-baselines: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) bench/study_game.py --baseline loo,mean --cache .study-cache

## make e2e: TRL's GRPOTrainer end to end, plug-in vs digamma vs coefgen's default (docs/e2e.md; ~7 min on 2 cores;
## needs the trainers venv of make test-trainers, or TRAINERS_VENV=...; options: make e2e E2E_ARGS="--seeds 8 --task f.json")
e2e: $(STAMP)
	bash examples/e2e_trl/run.sh $(E2E_ARGS)

clean:
	rm -rf $(VENV) .venv-trainers .e2e-work build *.egg-info .pytest_cache
