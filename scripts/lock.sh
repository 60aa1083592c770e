#!/usr/bin/env bash
# Regenerates requirements.lock: every package pinned to an exact version with hashes.
# torch is pinned to the CPU build through constraints-cpu.txt, so a CPU machine never pulls CUDA wheels.
# Then requirements-gpu.lock for GPU hosts: the same pins, but torch's default PyPI build (CUDA) and the
# CUDA libraries it needs, also with hashes. No find-links there: the local +cpu wheel would win.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .attestflow/lock-venv
.attestflow/lock-venv/bin/pip install -q uv==0.13.8
find_links=()
[ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
.attestflow/lock-venv/bin/uv pip compile pyproject.toml --extra dev \
  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --index-strategy unsafe-best-match "${find_links[@]}" \
  --constraint constraints-cpu.txt --no-header --quiet -o requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) packages"
sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\).*/\1/p' requirements.lock | sed 's/+cpu$//' >.attestflow/lock-gpu-constraints.txt
.attestflow/lock-venv/bin/uv pip compile pyproject.toml --extra dev \
  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --index-strategy unsafe-best-match \
  --constraint .attestflow/lock-gpu-constraints.txt --no-header --quiet -o requirements-gpu.lock
echo "requirements-gpu.lock: $(grep -c '==' requirements-gpu.lock) packages"
# The optional Spark engine: the CPU lock's pins plus pyspark and what it needs, all hashed (installed by `make test`).
.attestflow/lock-venv/bin/uv pip compile pyproject.toml --extra dev --extra spark \
  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --index-strategy unsafe-best-match "${find_links[@]}" \
  --constraint constraints-cpu.txt --constraint .attestflow/lock-gpu-constraints.txt --no-header --quiet -o requirements-spark.lock
echo "requirements-spark.lock: $(grep -c '==' requirements-spark.lock) packages"
