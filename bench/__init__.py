"""pushgate benchmark tool: ``python -m bench.run --help`` (see docs/benchmarks.md)."""
