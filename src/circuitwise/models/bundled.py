"""Models that ship inside the package, loadable offline by a short name.

``bundled`` is a small GPT-2-architecture model, ``bundled-llama`` its Llama-architecture twin
(RMSNorm, rotary positions, grouped-query attention, SwiGLU), trained on the same corpus with
the same tokenizer by ``scripts/train_bundled.py``; each folder holds its MODEL_CARD.md.
"""

from __future__ import annotations

from pathlib import Path

from circuitwise.errors import ModelLoadError

_MODELS = Path(__file__).parent
BUNDLED_DIRS: dict[str, Path] = {"bundled": _MODELS / "bundled", "bundled-llama": _MODELS / "bundled_llama"}
BUNDLED_DIR = BUNDLED_DIRS["bundled"]
BUNDLED_NAMES = tuple(BUNDLED_DIRS)
_TRAIN = {"bundled": "--arch gpt2", "bundled-llama": "--arch llama"}


def bundled_path(name: str = "bundled") -> Path:
    if name not in BUNDLED_DIRS:
        raise ModelLoadError(f"Unknown bundled model {name!r}; choose one of {BUNDLED_NAMES}.")
    folder = BUNDLED_DIRS[name]
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"The bundled model {name!r} is missing from {folder}. Re-install circuitwise from a "
            f"full checkout, or rebuild it with `python scripts/train_bundled.py {_TRAIN[name]}`."
        )
    return folder


__all__ = ["BUNDLED_DIR", "BUNDLED_DIRS", "BUNDLED_NAMES", "bundled_path"]
