"""Models that ship inside the package, loadable offline by a short name."""

from __future__ import annotations

from pathlib import Path

from circuitwise.errors import ModelLoadError

BUNDLED_DIR = Path(__file__).parent / "bundled"
BUNDLED_NAMES = ("bundled",)


def bundled_path(name: str = "bundled") -> Path:
    if name not in BUNDLED_NAMES:
        raise ModelLoadError(f"Unknown bundled model {name!r}; choose one of {BUNDLED_NAMES}.")
    if not (BUNDLED_DIR / "config.json").exists():
        raise ModelLoadError(
            f"The bundled model is missing from {BUNDLED_DIR}. Re-install circuitwise from a "
            "full checkout, or rebuild it with `python scripts/train_bundled.py`."
        )
    return BUNDLED_DIR


__all__ = ["BUNDLED_NAMES", "bundled_path"]
