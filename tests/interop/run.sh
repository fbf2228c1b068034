#!/usr/bin/env bash
# Interop: a real gRPC client (Python grpcio, stubs generated from wire/proto) against two
# `weft run` nodes on loopback. Installs grpcio and grpcio-tools from PyPI into a venv under
# target/ (kept between runs), builds nothing itself: pass the weft binary, or it uses
# target/debug/weft (what `cargo test --workspace` built). Bounded: the checks end within
# about two minutes or fail.
set -euo pipefail
cd "$(dirname "$0")/../.."
weft="${1:-target/debug/weft}"
[ -x "$weft" ] || { echo "interop: $weft is not built (run cargo test --workspace or cargo build first)"; exit 1; }
venv=target/interop-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import grpc, grpc_tools' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check grpcio grpcio-tools
fi
gen=target/interop-gen
rm -rf "$gen" && mkdir -p "$gen"
"$venv/bin/python" -m grpc_tools.protoc -I wire/proto/collector \
  --python_out="$gen" --grpc_python_out="$gen" common.proto dispatcher.proto
"$venv/bin/python" -m grpc_tools.protoc -I wire/proto/grpc/health/v1 \
  --python_out="$gen" --grpc_python_out="$gen" health.proto
PYTHONPATH="$gen" timeout 240 "$venv/bin/python" tests/interop/check.py "$weft"
