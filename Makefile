# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xllm-installed
OFFLINE := HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 HF_DATASETS_OFFLINE=1
SYSTEM_PACKAGES := ffmpeg espeak-ng

.PHONY: setup system-packages test demo bench lint fuzz

setup: system-packages $(STAMP)

# ffmpeg (torchcodec decodes media with it) and espeak-ng (speech of the demo world).
system-packages:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing system packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "Missing system packages:$$missing"; \
			echo "Install them first, e.g.: sudo apt-get install$$missing"; \
			exit 1; \
		fi; \
	fi

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -r constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[all]'
	touch $(STAMP)

test: setup
	$(OFFLINE) $(BIN)/python -m pytest -q -n 2 --dist loadfile

demo: setup
	$(OFFLINE) $(BIN)/xllm demo

bench: setup
	$(OFFLINE) $(BIN)/python -m benchmarks

fuzz: setup
	$(OFFLINE) XLLM_FUZZ_EXAMPLES=500 $(BIN)/python -m pytest -q tests/test_fuzz.py

lint: setup
	$(BIN)/ruff check xllm tests benchmarks scripts
	$(BIN)/ruff format --check xllm tests benchmarks scripts
