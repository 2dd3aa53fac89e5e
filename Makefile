# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow test-trainers bench study venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## make run: set up, then build the embedded default table set into tables/
run: $(STAMP)
	$(VENV)/bin/coefgen build --out tables

## make test: set up, then run the test suite
test: $(STAMP)
	$(PY) -m pytest -q

## make test-slow: the slow loops left out of `make test` (a SIGTERM loop over parallel builds, ~3 min)
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

## make test-trainers: the trainer integrations through TRL's, verl's and OpenRLHF's own code
## (separate venv .venv-trainers; SKIPPED, loudly, without the machine's local CPU torch wheel)
test-trainers:
	bash tests_trainers/run.sh

## make bench: timings and accuracy figures quoted in the issues' notes
bench: $(STAMP)
	$(PY) bench/run_all.py

## make study: the game study behind the default kl tables (README "Choosing a table"; ~20 min on 2 cores)
study: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) bench/study_game.py --cache .study-cache

clean:
	rm -rf $(VENV) .venv-trainers build *.egg-info .pytest_cache
