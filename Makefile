.PHONY: run test lint bench proto

run:        ## install and start pushgate in embedded mode
	./scripts/run

test:       ## install test deps, lint, type-check, run every test
	./scripts/test

HUBS ?= 2
ROUTERS ?= 1
cluster:    ## nginx + HUBS hubs + ROUTERS routers + Redis + MariaDB on 127.0.0.1 (Ctrl-C stops)
	[ -x .venv/bin/python ] || python3 -m venv .venv
	.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[mysql]'
	.venv/bin/python -m tests.services
	.venv/bin/python -m deploy.local.cluster up --hubs $(HUBS) --routers $(ROUTERS)

lint:
	.venv/bin/ruff check pushgate tests bench scripts deploy
	.venv/bin/mypy pushgate deploy

bench:      ## S1 S2 S4 against the hand-written baseline (see docs/benchmarks.md)
	.venv/bin/python -m bench.run S1 S2 S4

proto:      ## regenerate the gRPC stubs in pushgate/rpc/ from proto/
	./scripts/gen_proto.sh
