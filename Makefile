# Two promises (see README): `make run` sets up a fresh Debian machine and runs the main job on
# embedded defaults; `make test` sets up and runs the whole test suite with lint and type checks.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := sip-tester baresip baresip-core espeak-ng dnsmasq kamailio kamailio-tls-modules linphone-cli postgresql
STAMP := $(VENV)/.installed
# Every benchmark prints its ratio against a reference measured in the same run, and its goal.
BENCHES := srtp_relay bridged_calls cps conference overload webhook store markup cluster bindings

.PHONY: setup system-deps run demo test lint typecheck pytest bench clean $(addprefix bench-,$(BENCHES))

# Debian packages the real-peer tests and <Say> need. Installs only what is missing; needs root
# (or sudo) the first time.
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PY) -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: system-deps $(STAMP)

# The main job: the hosted engine on embedded defaults (SIP 5060/5061, REST API 8080, SQLite,
# a self-signed development certificate) with the bundled example IVR app behind its demo domain.
run: setup
	$(BIN)/python examples/serve_demo.py

# A whole call through the example IVR in the simulator: no SIP, no RTP, no phone line.
demo: setup
	$(BIN)/python examples/run_demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: setup lint typecheck pytest

bench: $(addprefix bench-,$(BENCHES))

# A static pattern rule: make searches no implicit rule for a phony target, so a plain
# "bench-%:" pattern would leave every bench-NAME (and bench) doing nothing.
$(addprefix bench-,$(BENCHES)): bench-%: setup
	$(BIN)/python bench/$*.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
