"""Two different models compare on what they share, and say what they cannot compare — never a traceback."""

from __future__ import annotations

import json

from circuitwise.compare.match import match_edges, match_labels
from tests.unit.compare.conftest import invoke


def test_the_two_bundled_models_compare_on_the_cells_they_share(tmp_path):
    # bundled (GPT-2 style, learned positions) against bundled-llama (rotary, grouped-query): was
    # "ValueError: the sides have 6 and 5 cells" after all the work.
    out = tmp_path / "cmp"
    r = invoke("compare", "opposites", "--model", "bundled", "--model-b", "bundled-llama", "--n", "8",
               "--random-circuits", "2", "--bootstrap", "200", "--permutations", "200", "--out", out)
    assert r.exit_code == 0, r.output
    assert "only on side A: pos_embed" in " ".join(r.output.split())  # said on the console …
    data = json.loads((out / "compare.json").read_text())
    assert data["complete"]
    assert any("only on side A: pos_embed" in n for n in data["notes"])  # … and in compare.json (the page shows notes)
    assert data["layers"]["cells"] == ["embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    assert len(data["a"]["layer_labels"]) == 6 and len(data["b"]["layer_labels"]) == 5  # each side whole
    assert data["lens"] is not None and data["heads"] is not None
    assert data["circuits"] is None or data["circuits"]["overlap"] is not None
    assert "pos_embed" in (out / "compare.html").read_text()


def test_layers_of_models_of_other_depths_match_by_relative_depth():
    a = ["embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    b = ["embed", "pos_embed"] + [f"{l}_{c}" for l in range(4) for c in ("attn_out", "mlp_out")]
    m = match_labels(a, b, 2, 4)
    # layer 0 of 2 sits at depth 0.25, layer 1 of 4's centre; layer 1 of 2 at 0.75, layer 3 of 4's
    assert m.cells == ["embed", "0_attn_out ~ 1_attn_out", "0_mlp_out ~ 1_mlp_out", "1_attn_out ~ 3_attn_out",
                       "1_mlp_out ~ 3_mlp_out"]
    assert [b[j] for j in m.index_b] == ["embed", "1_attn_out", "1_mlp_out", "3_attn_out", "3_mlp_out"]
    assert m.only_a == [] and "pos_embed" in m.only_b and "0_attn_out" in m.only_b and m.by_depth
    note = m.note("Per-layer decomposition")
    assert "relative depth" in note and "only on side B: pos_embed" in note
    swapped = match_labels(b, a, 4, 2)  # the deeper model as A: the same pairs, labelled A first
    assert swapped.cells[1] == "1_attn_out ~ 0_attn_out"
    assert [a[j] for j in swapped.index_b] == [a[j] for j in m.index_a]
    assert [b[i] for i in swapped.index_a] == [b[j] for j in m.index_b]


def test_same_depth_matches_by_name_and_edges_by_name():
    m = match_labels(["embed", "pos_embed", "0_attn_out"], ["embed", "0_attn_out"], 1, 1)
    assert (m.cells, m.index_a, m.index_b, m.only_a, m.only_b) == (["embed", "0_attn_out"], [0, 2], [0, 1],
                                                                   ["pos_embed"], [])
    assert match_labels(["x", "y"], ["x", "y"], 1, 1).note("Lens") is None  # all matched: nothing to say
    e = match_edges(["input->L0H0", "L0H0->logits", "L0MLP->logits"], ["input->L0H0", "L0H0->logits"])
    assert e.cells == ["input->L0H0", "L0H0->logits"] and e.only_a == ["L0MLP->logits"]
