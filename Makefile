# The two commands of the README: `make demo` and `make test`. Both set up what they need first.
.PHONY: setup demo test lint clean-services

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/sitsmon demo

test: setup
	bash scripts/test.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports

clean-services:
	-bash scripts/services/kafka.sh stop
	-bash scripts/services/postgres.sh stop
	rm -rf .services
