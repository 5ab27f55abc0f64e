.PHONY: run test lint bench proto

run:        ## install and start pushgate in embedded mode
	./scripts/run

test:       ## install test deps, lint, type-check, run every test
	./scripts/test

lint:
	.venv/bin/ruff check pushgate tests bench
	.venv/bin/mypy pushgate

bench:      ## S1 S2 S4 against the hand-written baseline (see docs/benchmarks.md)
	.venv/bin/python -m bench.run S1 S2 S4

proto:      ## regenerate the gRPC stubs in pushgate/rpc/ from proto/
	./scripts/gen_proto.sh
