"""GPT-J's rotary table is found in either transformers layout: its own GPTJRotaryEmbedding module (5.25, the
venv's) or a buffer of each GPTJAttention (5.17, the project's GPU image, where the fast engines refused
GPT-J: "rotary attention computed inside an unknown Hugging Face module")."""

from __future__ import annotations

import torch
from torch import nn

from circuitwise.models.weights import _gptj_rotary


def _model(layout: str, table: torch.Tensor) -> nn.Module:
    holder = type("GPTJRotaryEmbedding" if layout == "module" else "GPTJAttention", (nn.Module,), {})()
    holder.register_buffer("embed_positions", table, persistent=False)
    root = nn.Module()
    root.original_model = nn.Sequential(nn.Linear(2, 2), holder)
    return root


def test_the_table_is_read_from_either_layout_and_nothing_else():
    table = torch.randn(16, 8)
    for layout in ("module", "attention"):
        assert _gptj_rotary(_model(layout, table)) is table
    other = nn.Module()
    other.original_model = nn.Sequential(type("LlamaAttention", (nn.Module,), {})())
    other.original_model[0].register_buffer("embed_positions", table)  # another family's buffer of that name
    assert _gptj_rotary(other) is None


def test_the_table_of_the_gptj_fixture_matches_its_attention(family_model_for):
    """On the installed transformers: the table found is the one the fixture's attention rotates with (GPT-J's
    engine output is checked against the bridge's forward by every engine test of the family too)."""
    model = family_model_for("gptj")
    table = _gptj_rotary(model)
    assert table is not None and table.shape[-1] == model.cfg.rotary_dim
