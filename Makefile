# Linli — two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Models are loaded from installed packages only; never from a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install install-test index run cluster lint check test eval bench bench-answer bench-wechat system-deps clean

# pytest exits 5 when it collected no tests: that must fail loudly, never pass.
define pytest
	@$(BIN)/python -m pytest -q $(1); status=$$?; \
	if [ $$status -eq 5 ]; then echo "FAILED: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$status
endef

# `make run` installs what serving needs; `make test` adds the test tools and the optional
# sentence-transformers extra (torch, CPU build), whose embedder and reranker the contract tests cover.
# One pip pass each (a second pass re-resolves everything). pip byte-compiles on one core; compileall
# on both cores is faster (a clean test install: two pip passes 105 s, now 87 s). The compiling must happen:
# machines here set PYTHONDONTWRITEBYTECODE, so what is not compiled now every process compiles again
# on import. (compileall's status is ignored: some packages ship test files that are not Python 3.)
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check --no-compile
COMPILE := $(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e .
	@$(COMPILE)
	@touch $(STAMP)

$(TEST_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[test,st]'
	@$(COMPILE)
	@touch $(STAMP) $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

index: install
	$(BIN)/linli kb build --if-missing

# The sandbox stand-in for the government backend and the outbox worker run beside the server
# and stop with it. The first run makes a data key (var/data.key, mode 600: keep a copy; without
# it the encrypted ID and phone numbers cannot be read) unless LINLI_PRIVACY__DATA_KEY is set.
run: index system-deps
	@mkdir -p var && chmod 700 var
	@test -n "$$LINLI_PRIVACY__DATA_KEY" || test -s var/data.key || $(BIN)/linli keygen --out var/data.key
	@trap 'trap - EXIT INT TERM; kill 0' EXIT INT TERM; \
	export LINLI_PRIVACY__DATA_KEY="$${LINLI_PRIVACY__DATA_KEY:-$$(cat var/data.key)}"; \
	$(BIN)/python -m connectors.sandbox --host 127.0.0.1 --port 8100 & \
	$(BIN)/linli worker & \
	$(BIN)/linli serve --host $(HOST) --port $(PORT)

# Linli as a cluster on this machine, one command: PostgreSQL (127.0.0.1:5432 when it answers,
# else one of its own under var/cluster/pg), Redis (the machine's, else its own), HAProxy, 3
# `linli serve` replicas, 2 `linli worker`s and the sandbox backend; prints the URL, and Ctrl-C
# stops everything (docs/deployment.md). Options: make cluster CLUSTER_ARGS="--replicas 2 --port 9090".
cluster: install
	@command -v haproxy >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && { apt-get install -y -qq haproxy || \
	    { apt-get update -qq && apt-get install -y -qq haproxy; }; } >/dev/null 2>&1; } || \
	  { echo "haproxy is missing: apt-get install -y haproxy (as root)" >&2; exit 1; }
	$(BIN)/linli cluster $(CLUSTER_ARGS)

# From Debian, where missing: ffmpeg (decoding voice messages), espeak-ng (English test speech),
# headless Chromium and CJK fonts (the console's browser test), HAProxy (the chaos test's
# cluster). Without root or network the tests that need them are skipped with the reason printed.
system-deps:
	@command -v ffmpeg >/dev/null && command -v espeak-ng >/dev/null && command -v chromium >/dev/null && \
	  command -v chromedriver >/dev/null && command -v haproxy >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq ffmpeg espeak-ng chromium chromium-driver \
	    fonts-noto-cjk haproxy) >/dev/null 2>&1; } || \
	  echo "note: could not install ffmpeg/espeak-ng/chromium/haproxy; the tests that need them will be skipped"

# Lint and types (configured in pyproject.toml): ruff on everything, mypy on the packages.
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy

# The fast path while working: lint, types, then the unit tests that need no built index.
check: lint
	$(call pytest,tests/unit -m "not slow")

# CI runs this (.ci/run). ruff first (a lint error fails it before any test runs); mypy (single-
# threaded, ~30 s from a clean clone) runs beside the tests on the other core, and a type error
# fails the run as surely, once both are done. pytest's exit 5 (no tests collected) fails loudly.
test: install-test system-deps
	$(BIN)/ruff check .
	@$(BIN)/mypy > $(VENV)/mypy.log 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "FAILED: pytest collected no tests (exit 5)" >&2; fi; \
	wait $$mypy; typed=$$?; echo "mypy:"; cat $(VENV)/mypy.log; \
	if [ $$typed -ne 0 ]; then echo "FAILED: mypy found type errors (above)" >&2; fi; \
	[ $$status -eq 0 ] && [ $$typed -eq 0 ]

eval: index
	$(BIN)/linli eval
	$(BIN)/linli eval resident
	$(BIN)/linli eval --dataset ../shared/data/retrieval/social_law
	$(BIN)/linli eval --dataset ../shared/data/retrieval/cmedqq
	$(BIN)/linli eval intents
	$(BIN)/linli eval dialogue
	$(BIN)/linli eval asr

bench: index
	$(BIN)/python -m bench.dialogue_latency

# p50/p95 of a policy answer from a warm `linli serve` over HTTP, pinned to 2 cores.
bench-answer: index
	$(BIN)/python -m bench.answer_latency

# The WeChat callback under 200 concurrent connections (SQLite, and PostgreSQL when reachable).
bench-wechat: install
	$(BIN)/python -m bench.wechat_callback

clean:
	rm -rf $(VENV) var
