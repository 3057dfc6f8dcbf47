"""Stage 1: load a TransformerLens model."""

from circuitwise.models.loading import load_model, pick_device

__all__ = ["load_model", "pick_device"]
