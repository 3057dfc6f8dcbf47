"""bfloat16 against float32 at Qwen2.5-0.5B's full shapes (24 layers, random weights): how far per-prompt
values move, in eps · (1 + max |logit diff|), against the README's bound max(4, n_layers) (Precision).

    python bench/bf16_depth.py [CHECKPOINT_DIR]     # about 2.5 minutes on one core

Measured 2026-12-07 (one thread, a busy 2-core machine): baseline 9.3 eps, `heads` sweep 11.3 eps,
`resid_pre` sweep 13.3 eps; bound 24. Results: bench/results/bf16-depth-qwen2.5-0.5b-24L-2026-12-07.json.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

BF16_EPS = 2.0 ** -7


def main() -> None:
    from _models import ARCHS

    import circuitwise as cw
    from circuitwise.patching import activation_patching
    from tests.families import make_family_checkpoint

    torch.set_num_threads(1)
    arch = ARCHS["qwen2"]  # Qwen2.5-0.5B's shapes; the bench arch has half its depth, this the whole
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/cw-bf16-depth/qwen24")
    path = folder if (folder / "config.json").exists() else make_family_checkpoint(
        arch.family, folder, seed=0, n_layers=24, shapes=arch.shapes)
    task = cw.get_task("opposites").subset(range(6))
    started = time.time()
    m32 = cw.load_model(str(path), device="cpu", dtype="float32")
    m16 = cw.load_model(str(path), device="cpu", dtype="bfloat16")
    tok32, _ = cw.tokenize_task(m32, task, need_corrupted=True)
    tok16, _ = cw.tokenize_task(m16, task, need_corrupted=True)
    b32, b16 = cw.baseline(m32, tok32), cw.baseline(m16, tok16)
    scale = float(b32.logit_diff.abs().max())
    unit = BF16_EPS * (1 + scale)
    out: dict[str, float | int] = {"n_layers": int(m32.cfg.n_layers), "max_abs_logit_diff": scale,
                                   "bound_eps": max(4, int(m32.cfg.n_layers))}
    out["baseline_eps"] = float((b16.logit_diff.float() - b32.logit_diff.float()).abs().max()) / unit
    for what in ("resid_pre", "heads"):
        p32 = activation_patching(m32, tok32, what, normalize=False)
        p16 = activation_patching(m16, tok16, what, normalize=False)
        out[f"{what}_eps"] = float((p16.raw.float() - p32.raw.float()).abs().max()) / unit
    out["seconds"] = round(time.time() - started, 1)
    print(json.dumps(out))
    dest = ROOT / "bench" / "results" / f"bf16-depth-qwen2.5-0.5b-24L-{dt.date.today()}.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
