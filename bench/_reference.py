"""What the parity scripts share (acdc_parity.py, eap_ig_parity.py …): a reference implementation's own venv and
running its commands into a log, a random checkpoint's embedding scaled so a corruption moves its answer, and which
circuitwise commit a result was measured on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: int = 3600) -> int:
    """``cmd``'s return code, its output appended to ``log`` (venv builds, pip installs, reference runs)."""
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode


def install_venv(venv: Path, log: Path, torch_spec: str, deps: list[str]) -> tuple[Path | None, str]:
    """A reference implementation's own venv, made once (``.installed`` marks it done): ``torch_spec``
    first (the CPU wheel), then ``deps``. The venv's python and "ok", or None and why it failed."""
    py = venv / "bin" / "python"
    if (venv / ".installed").exists():
        return py, "ok"
    if not py.exists() and run([sys.executable, "-m", "venv", str(venv)], log):
        return None, f"python -m venv failed (see {log})"
    if run([str(py), "-m", "pip", "install", "-q", torch_spec], log):
        return None, f"installing {torch_spec} failed (see {log})"
    if run([str(py), "-m", "pip", "install", "-q", *deps], log):
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-6:]
        return None, f"pip install {' '.join(deps)} failed: " + " | ".join(tail)
    (venv / ".installed").write_text("ok")
    return py, "ok"


def embed_scale(ckpt: Path, k: float) -> None:
    """Scale the token embedding (and so a tied unembedding) by ``k``, in place; an untied unembedding is
    replaced by the scaled embedding. At random weights a task's corruption moves the answer by hundredths
    of a logit (a KL of 1e-3 nats over 50,257 tokens, float32's noise); ×5 gives a gap of a few units, a
    trained model's order of magnitude, so scores and thresholds are not ratios of noise."""
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(ckpt)
    with torch.no_grad():
        emb = hf.get_input_embeddings().weight
        emb.mul_(k)
        out = hf.get_output_embeddings().weight
        if out.data_ptr() != emb.data_ptr():  # untied (families.py's Llama): unembed with the embedding too
            out.copy_(emb)
    hf.save_pretrained(ckpt, safe_serialization=True)


def circuitwise_state() -> dict[str, Any]:
    """The commit this ran on, and the files under src/ that differed from it (others edit the tree)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout

    return {"commit": git("rev-parse", "HEAD").strip(),
            "src_uncommitted": [ln[3:] for ln in git("status", "--porcelain", "--", "src").splitlines() if ln]}
