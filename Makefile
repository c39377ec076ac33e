# The README's two commands: `make demo` (main job) and `make test` (the suite). Each runs the
# idempotent set-up first.
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup test unit functional integration demo bench lint validate diagrams

setup:
	@bash scripts/setup

test: setup
	$(VENV)/python -m pytest tests $(PYTEST_ARGS)

unit: setup
	$(VENV)/python -m pytest tests/unit $(PYTEST_ARGS)

functional: setup
	$(VENV)/python -m pytest tests/functional $(PYTEST_ARGS)

integration: setup
	$(VENV)/python -m pytest tests/integration $(PYTEST_ARGS)

demo: setup
	$(VENV)/python scripts/demo.py

bench: setup
	$(VENV)/python scripts/bench.py

lint: setup
	$(VENV)/ruff check . && $(VENV)/ruff format --check .

# Render and validate every config of a pillar tree, masterless: make validate PILLAR=path/to/pillar
PILLAR ?= pillar
validate: setup
	@scripts/validate-pillar $(PILLAR)

# The pictures of docs/architecture.md, from their Graphviz sources (tests/unit/test_diagrams.py
# fails when an SVG is stale).
diagrams: setup
	@for f in docs/diagrams/*.dot; do dot -Tsvg "$$f" -o "$${f%.dot}.svg"; done
