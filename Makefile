# Descent: developer entry points. `make run` starts the whole service locally.
# Extra pytest options: make test PYTEST_ARGS='-x -k curve'
.POSIX:
.PHONY: venv run test lint bench clean distclean

VENV = .venv
BIN = $(VENV)/bin
# Newer than pyproject.toml exactly when the install in $(VENV) is up to date.
STAMP = $(VENV)/.descent-installed

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	    py=$$(command -v python3.11 || command -v python3) || { \
	        echo "make: python3.11 or python3 is needed to create $(VENV)" >&2; exit 1; }; \
	    echo "creating $(VENV) with $$py"; \
	    "$$py" -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet -e '.[dev,digits]'
	@touch $(STAMP)

run: venv
	$(BIN)/python scripts/run_local.py

test: venv
	OPENBLAS_NUM_THREADS=1 $(BIN)/pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy app worker trainer scripts

bench: venv
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/trainer_bench.py
	$(BIN)/python bench/service_bench.py

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .run build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

# clean, and remove the virtualenv too.
distclean: clean
	rm -rf $(VENV)
