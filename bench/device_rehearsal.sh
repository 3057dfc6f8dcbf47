#!/usr/bin/env bash
# A dress rehearsal of the GPU check, here, without a GPU: a fresh virtual environment holding what the device
# image holds that circuitwise uses (its transformers 5.17, accelerate, numpy, pandas, pyarrow, PyYAML, Jinja2,
# filelock, rich, typer, safetensors, tokenizers, jaxtyping, psutil, six, … as KINDS.md lists them; torch
# 2.13.0 for the CPU in place of its CUDA build) plus exactly the wheels bench/device_wheels.sh carries, then
# `device_check.py --device cpu --quick`. A package the image lacks and the wheels do not carry fails here as
# it would there, before a scarce device session is spent on it (it found circuitsvis and lazy-importer).
#
#   bash bench/device_wheels.sh && bash bench/device_rehearsal.sh [device_check.py options]
#
# The wheels are for the device's Python 3.12; this machine's Python may differ, so the same versions are
# installed from the package index for it (--no-deps: nothing beyond what is carried).
set -euo pipefail
cd "$(dirname "$0")/.."
env=${REHEARSAL_ENV:-/tmp/circuitwise-device-rehearsal}
wheels=bench/.cache/device-wheels
ls "$wheels"/*.whl >/dev/null 2>&1 || { echo "run 'bash bench/device_wheels.sh' first"; exit 1; }
if [ ! -x "$env/bin/python" ]; then
  python3 -m venv "$env"
  "$env/bin/pip" install -q torch==2.13.0
  "$env/bin/pip" install -q "transformers==5.17.*" accelerate numpy pandas pyarrow pyyaml jinja2 filelock rich typer \
    safetensors tokenizers jaxtyping psutil huggingface-hub tqdm regex einops requests fsspec xxhash packaging \
    sentencepiece typing-extensions narwhals six
fi
# The carried distributions at the carried versions, by name (the file names hold both).
specs=()
for w in "$wheels"/*.whl; do
  base=$(basename "$w")
  specs+=("$(echo "$base" | cut -d- -f1)==$(echo "$base" | cut -d- -f2)")
done
"$env/bin/pip" install -q --no-deps "${specs[@]}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTHONPATH=src exec "$env/bin/python" bench/device_check.py --device cpu --quick --threads 1 \
  --out "${REHEARSAL_OUT:-/tmp/device-rehearsal.json}" "$@"
