# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xllm-installed
OFFLINE := HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: setup system-packages browser test test-lmms-eval conformance demo bench lint fuzz

setup: system-packages $(STAMP)

# $(call install-missing,COMMAND:PACKAGE ...,WHAT,ELSE): install (apt-get, as root) the packages whose command
# is missing; without root, say what to install and run ELSE.
define install-missing
	@missing=""; \
	for pair in $(1); do command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing $(2):$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "Missing $(2):$$missing (install them first, e.g. sudo apt-get install$$missing)"; $(3); \
		fi; \
	fi
endef

# ffmpeg (torchcodec decodes media with it) and espeak-ng (speech of the demo world).
system-packages:
	$(call install-missing,ffmpeg:ffmpeg espeak-ng:espeak-ng,system packages,exit 1)

# Only the tests need a browser (the chat page's test drives Debian's chromium through its chromium-driver);
# without it that test fails and says how to install it.
browser:
	$(call install-missing,chromium:chromium chromedriver:chromium-driver,the browser test's browser,true)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -r constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[all]'
	touch $(STAMP)

test: setup browser
	$(OFFLINE) $(BIN)/python -m pytest -q -n 2 --dist loadfile

# The lmms-eval plugin's tests (tests/lmms_eval_plugin/) in a venv of their own, .venv-lmms-eval: constraints.txt's
# stack plus lmms-eval 0.7.3 (constraints-lmms-eval.txt), which brings python-dateutil 2.x and, through the
# `lmms-eval` extra, filelock 3.x (the main venv has both at 4.x) and heavy packages (wandb, av, opencv,
# sentence-transformers, ...) that stay out of the main venv, whose suite skips those tests. From scratch (pip's
# cache warm, 2 busy cores) the venv took 3 min 40 s to 6 min 40 s to build and its tests 1 min 40 s.
LMMS_VENV := .venv-lmms-eval
LMMS_STAMP := $(LMMS_VENV)/.xllm-installed

$(LMMS_STAMP): pyproject.toml constraints.txt constraints-lmms-eval.txt
	test -x $(LMMS_VENV)/bin/python || $(PYTHON) -m venv $(LMMS_VENV)
	$(LMMS_VENV)/bin/pip install -q -c constraints.txt -c constraints-lmms-eval.txt -e '.[lmms-eval,audio,video,dev]'
	touch $(LMMS_STAMP)

test-lmms-eval: system-packages $(LMMS_STAMP)
	$(OFFLINE) $(LMMS_VENV)/bin/python -m pytest -q tests/lmms_eval_plugin

# transformers' own common model, config and processor tests on our classes (tests/conformance/: the sdist of
# the installed transformers is downloaded into the venv's cache on first use). Also part of `make test`.
conformance: setup
	$(OFFLINE) $(BIN)/python -m pytest -q tests/conformance

demo: setup
	$(OFFLINE) $(BIN)/xllm demo

bench: setup
	$(OFFLINE) $(BIN)/python -m benchmarks

fuzz: setup
	$(OFFLINE) XLLM_FUZZ_EXAMPLES=500 $(BIN)/python -m pytest -q tests/test_fuzz.py

lint: setup
	$(BIN)/ruff check xllm tests benchmarks scripts
	$(BIN)/ruff format --check xllm tests benchmarks scripts
