# Two commands: `make test` and `make demo`; both install what is missing first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_TOOLS := espeak-ng sox

DEMO_ZIP := egs/mustc_conformer_ctc/exp/st_demo_finetune/packed/model.zip

.PHONY: venv sysdeps test demo bench bench-translate clean-venv

venv: sysdeps $(STAMP)

# Debian packages for synthesising test and demo speech.
sysdeps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "setuptools<74" wheel
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

test: venv
	$(PY) -m pytest -q tests

# The whole recipe on the embedded mini corpus (see README); DEMO_ARGS go to run.sh.
demo: venv
	cd egs/mustc_conformer_ctc && time ./demo.sh $(DEMO_ARGS)

bench: venv
	$(PY) bench/encoder_bench.py

# Real-time factor at batch 1 and 10 on the demo's test clips: needs `make demo` first.
bench-translate: venv
	@test -f $(DEMO_ZIP) || { echo "ERROR: $(DEMO_ZIP) not found: run make demo first" >&2; exit 1; }
	$(PY) bench/translate_rtf.py --model $(DEMO_ZIP)
	$(PY) bench/translate_rtf.py --full-size --clips 20

clean-venv:
	rm -rf $(VENV)
