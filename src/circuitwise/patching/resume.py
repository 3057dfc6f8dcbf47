"""Checkpoints of a sweep in progress, so an interrupted sweep resumes where it stopped.

Every finished unit (one layer of one batch of examples, and each batch's unpatched metrics)
is written at once, atomically (temporary file, then rename), as safetensors, under
``OUT/.patching/<key>/``. The key hashes everything that determines the numbers — model
identity, the task's contents, sweep, direction, metric, alignment, method — so a re-run with
the same settings picks up the finished units and one with other settings starts clean,
without touching them. Parts are named by example range, so a different batch size
recomputes rather than misreads.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask


def model_identity(model: Any) -> dict[str, Any]:
    cfg = model.cfg
    # A few weights' values: two checkpoints with one name and shape still differ here. (Only
    # plain parameters: the bridge rebuilds stacked ones like W_out on every access.)
    probe = [model.W_E[:4, :4], model.W_U[:4, :4], model.W_U[-4:, -4:]]
    return {
        "name": str(getattr(model, "circuitwise_name", getattr(cfg, "model_name", "?"))),
        "shape": [cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_vocab],
        "probe": [round(float(t.double().sum()), 6) for t in probe],
        "dtype": str(cfg.dtype),
    }


def sweep_key(model: Any, tok: TokenizedTask, settings: dict[str, Any]) -> str:
    data = {
        "model": model_identity(model),
        "examples": [e.to_json() for e in tok.task.examples],
        "tokens": [tok.clean.tolist(), None if tok.corrupted is None else tok.corrupted.tolist()],
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]


class Checkpoint:
    """Finished units of one sweep on disk; ``None`` folder = keep nothing."""

    def __init__(self, out: str | Path | None, key: str, meta: dict[str, Any]):
        self.folder: Path | None = None
        if out is None:
            return
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file, not a folder. Choose a folder path (it is created if needed).")
        self.folder = out / ".patching" / key
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"Cannot create {self.folder}: {e.strerror}. Choose a writable --out folder.") from None
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            _atomic_write_text(meta_path, json.dumps(meta, indent=1, default=str))

    def load(self, name: str) -> dict[str, torch.Tensor] | None:
        if self.folder is None:
            return None
        path = self.folder / f"{name}.safetensors"
        if not path.exists():
            return None
        try:
            return load_file(str(path))
        except Exception:  # a torn or foreign file is recomputed, never trusted
            return None

    def save(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        if self.folder is None:
            return
        path = self.folder / f"{name}.safetensors"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["Checkpoint", "model_identity", "sweep_key"]
