.PHONY: test unit lint bootstrap demo

bootstrap:
	scripts/bootstrap.sh

test:
	scripts/test.sh

unit: bootstrap
	.venv/bin/pytest -m unit

lint: bootstrap
	.venv/bin/ruff check ops tests benchmarks
	.venv/bin/ruff format --check ops tests benchmarks
	.venv/bin/mypy

demo:
	scripts/demo.sh
