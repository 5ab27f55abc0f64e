#!/usr/bin/env bash
# Regenerate the Python gRPC stubs in pushgate/rpc/ from proto/ (`make proto`).
# Usage: ./scripts/gen_proto.sh [OUT_DIR]   (OUT_DIR defaults to the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.}
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -Iproto --python_out="$OUT" --pyi_out="$OUT" \
  --grpc_python_out="$OUT" proto/pushgate/rpc/pushgate.proto
