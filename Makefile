# Two commands: `make test` and `make demo`; both install what is missing first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# command:Debian package
SYSTEM_TOOLS := espeak-ng:espeak-ng sox:sox chromium:chromium chromedriver:chromium-driver

DEMO_ZIP := egs/mustc_conformer_ctc/exp/st_demo_finetune/packed/model.zip

.PHONY: venv sysdeps test demo bench bench-quick bench-translate bench-talk clean-venv

venv: sysdeps $(STAMP)

# Debian packages for synthesising test and demo speech, and the browser that tests `serve`'s page.
sysdeps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "setuptools<74" wheel
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

test: venv
	$(PY) -m pytest -q tests

# The whole recipe on the embedded mini corpus (see README); DEMO_ARGS go to run.sh.
demo: venv
	cd egs/mustc_conformer_ctc && time ./demo.sh $(DEMO_ARGS)

# Every benchmark, ours against ESPnet's peer (about an hour on 2 cores): writes docs/benchmarks.md.
# `make bench-quick` smoke-tests the harness in a few minutes (output in a temporary directory).
bench: venv
	BENCH_COMMAND="make bench" $(PY) bench/run_all.py

bench-quick: venv
	$(PY) bench/run_all.py --quick

# Real-time factor at batch 1 and 10 (2 threads) on the demo's test clips (needs `make demo` first):
# the demo model on 50, then full size (random weights) against ESPnet's stock decoding on 20.
DEMO_TEST := egs/mustc_conformer_ctc/data/tst-COMMON
bench-translate: venv
	@test -f $(DEMO_ZIP) || { echo "ERROR: $(DEMO_ZIP) not found: run make demo first" >&2; exit 1; }
	$(PY) bench/decoding.py --model $(DEMO_ZIP) --data_dir $(DEMO_TEST) --clips 50 --threads 2
	$(PY) bench/decoding.py --data_dir $(DEMO_TEST) --clips 20 --threads 2

# A talk of 80 of the demo's test sentences translated whole against sentence by sentence, and
# the cost of segmenting an hour (needs `make demo` first).
bench-talk: venv
	@test -f $(DEMO_ZIP) || { echo "ERROR: $(DEMO_ZIP) not found: run make demo first" >&2; exit 1; }
	$(PY) bench/long_talk.py --model $(DEMO_ZIP) --data_dir $(DEMO_TEST) --sentences 80 --threads 2

clean-venv:
	rm -rf $(VENV)
