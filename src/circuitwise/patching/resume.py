"""Checkpoints of a sweep in progress, so an interrupted sweep resumes where it stopped.

Every finished unit (one layer of one batch of examples, and each batch's unpatched metrics)
is written at once, atomically (temporary file, then rename), as safetensors, under
``OUT/.patching/<key>/``. The key hashes everything that determines the numbers — model
identity, the task's contents, sweep, direction, metric, alignment, method — so a re-run with
the same settings picks up the finished units and one with other settings starts clean,
without touching them. Parts are named by example range, so a different batch size
recomputes rather than misreads.

Each part carries, in its safetensors metadata, the sweep key, its own name and a SHA-256 of its
tensors (dtype, shape and bytes). A part whose metadata or checksum does not match — a flipped
bit, a file copied from another sweep, a torn write — is recomputed with a warning, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from circuitwise.errors import ConfigError
from circuitwise.models.fingerprint import fingerprint
from circuitwise.runfolder import atomic_write_text, output_error
from circuitwise.tasks.tokenize import TokenizedTask


def model_identity(model: Any) -> dict[str, Any]:
    cfg = model.cfg
    # The fingerprint (architecture, shapes, processing steps, dtype, a hash of the processed weights):
    # two checkpoints of one name and shape, or one checkpoint processed otherwise, key apart. Earlier
    # keys held a probe of three weight corners instead, so their checkpoints are recomputed once.
    return {
        "name": str(getattr(model, "circuitwise_name", getattr(cfg, "model_name", "?"))),
        "fingerprint": fingerprint(model),
    }


def sweep_key(model: Any, tok: TokenizedTask, settings: dict[str, Any]) -> str:
    # Hashed piece by piece: one JSON string of every example at once can be huge.
    h = hashlib.sha256()
    for part in (model_identity(model), settings):
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    for e in tok.task.examples:
        h.update(json.dumps(e.to_json(), sort_keys=True, default=str).encode())
    for t in (tok.clean, tok.corrupted):
        h.update(b"none" if t is None else t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


class CheckpointWarning(UserWarning):
    """A saved checkpoint part failed its check and is recomputed."""


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class Checkpoint:
    """Finished units of one sweep on disk; ``None`` folder = keep nothing."""

    def __init__(self, out: str | Path | None, key: str, meta: dict[str, Any]):
        self.folder: Path | None = None
        self.key = key
        if out is None:
            return
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file, not a folder. Choose a folder path (it is created if needed).")
        self.folder = out / ".patching" / key
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(e, self.folder, "create the checkpoint folder") from None
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            _atomic_write_text(meta_path, json.dumps(meta, indent=1, default=str))

    def load(self, name: str) -> dict[str, torch.Tensor] | None:
        if self.folder is None:
            return None
        path = self.folder / f"{name}.safetensors"
        if not path.exists():
            return None
        problem = None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # a torn or foreign file: any parse failure means "recompute"
            problem, tensors, meta = f"unreadable ({type(e).__name__})", {}, {}
        if problem is None:
            if meta.get("key") != self.key or meta.get("name") != name:
                problem = "written for another sweep or part"
            elif meta.get("sha256") != checksum(tensors):
                problem = "its checksum does not match its contents"
        if problem is not None:
            warnings.warn(CheckpointWarning(f"Checkpoint {path}: {problem}; recomputing it."), stacklevel=2)
            path.unlink(missing_ok=True)
            return None
        return tensors

    def save(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        if self.folder is None:
            return
        path = self.folder / f"{name}.safetensors"
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        meta = {"key": self.key, "name": name, "sha256": checksum(tensors)}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            save_file(tensors, str(tmp), metadata=meta)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise output_error(e, path) from None


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


__all__ = ["Checkpoint", "CheckpointWarning", "checksum", "model_identity", "sweep_key"]
