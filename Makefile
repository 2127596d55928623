# Task runner for developers; README gives the same commands without make.
.PHONY: run work test test-fast lint format bench

run:
	python3 -m backend run

work:
	python3 -m backend work

test:
	bash .ci/setup && python3 -m pytest

test-fast:
	python3 -m pytest -m "not slow"

lint:
	ruff check . && ruff format --check .

format:
	ruff check --fix . && ruff format .

bench:
	python3 bench/store_bench.py
	python3 bench/api_bench.py
	python3 bench/agent_bench.py
	python3 bench/gevent_lock_bench.py
	python3 bench/transcript_bench.py
	python3 bench/analytics_bench.py
	python3 bench/backends_bench.py
	python3 bench/agent_memory_bench.py
