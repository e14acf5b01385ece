#!/usr/bin/env bash
# One command that proves the pipeline on a GPU: bench/gpu_check.sh OUTDIR [--tiny] [--sections tests,bench,training,attacks]
# Writes OUTDIR/gpu_check.json and OUTDIR/gpu_check.md (pipeline/benchmark/gpu_check.py); <= 8 min on one H100/H200,
# under a minute in its tiny mode (the default without a GPU). Exit status 1 if a section failed.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: bench/gpu_check.sh OUTDIR [--tiny] [--sections ...]" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# $PYTHON if set, else the Quick start's .venv, else python3 from PATH
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
exec "$PYTHON" -m pipeline.benchmark.gpu_check "$@"
