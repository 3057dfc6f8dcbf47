"""Stage 1: load a TransformerLens model."""

from circuitwise.models.loading import dtype_of, load_model, pick_device
from circuitwise.models.processing import Processing, ProcessingStep

__all__ = ["Processing", "ProcessingStep", "dtype_of", "load_model", "pick_device"]
