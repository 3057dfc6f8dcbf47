"""The transcoders shipped for the bundled models load by name, fit their model, and meet their card."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from circuitwise.features.formats import BUNDLED, BUNDLED_DIR, check_model, load_transcoders

ROOT = Path(__file__).resolve().parents[3]


def _heldout_texts() -> list[str]:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from train_bundled_transcoders import heldout_texts
    finally:
        sys.path.pop(0)
    return heldout_texts()


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_shipped_files_are_small_and_load_by_name(name):
    folder = BUNDLED_DIR / BUNDLED[name]
    assert sum(p.stat().st_size for p in folder.iterdir()) < 3_000_000
    ts = load_transcoders(name)
    assert ts.model == name and len(ts) == 2 and ts[0].activation == "topk" and ts[0].k == 16
    assert ts[0].n_features == 1024 and ts[0].W_skip is not None and ts[0].site == "mlp_in"
    card = json.loads((folder / "card.json").read_text())["card"]
    assert card == ts.meta["card"] and "top-1 agreement" in (folder / "CARD.md").read_text()
    # The bar: FVU ≲ 0.05 per layer, top-1 agreement ≳ 90% with every MLP replaced
    assert max(card["fvu"]) <= 0.05 and card["top1_agreement"] >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_shipped_transcoders_meet_their_card(name):
    """Recomputed on the card's held-out documents, with the model loaded as users load it."""
    from circuitwise.features.train import tokenize, transcoder_card
    from circuitwise.models.loading import load_model

    ts = load_transcoders(name)
    model = load_model(name)
    assert check_model(ts, model) is None  # the recorded fingerprint is the loaded model's
    card = ts.meta["card"]
    rows = tokenize(model, _heldout_texts(), ts.meta["training"]["seq_len"])
    again = transcoder_card(model, ts, rows)
    assert again["heldout_tokens"] == card["heldout_tokens"]
    assert again["fvu"] == pytest.approx(card["fvu"], abs=1e-4)
    assert again["kl"] == pytest.approx(card["kl"], abs=1e-4)
    assert again["top1_agreement"] == pytest.approx(card["top1_agreement"], abs=2e-3)
