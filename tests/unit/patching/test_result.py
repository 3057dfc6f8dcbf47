"""PatchResult: plain JSON for the report, statistics over examples."""

from __future__ import annotations

import json

import pytest
import torch

from circuitwise.patching import DegenerateNormalizationWarning, PatchResult, activation_patching


@pytest.fixture(scope="module")
def heads(small_model, seed_tok):
    return activation_patching(small_model, seed_tok, "heads")


def test_to_json_is_strict_json_with_labelled_axes(heads):
    data = json.loads(json.dumps(heads.to_json(), allow_nan=False))
    assert data["axes"] == ["layer", "head"]
    assert len(data["values"]) == len(data["labels"]["layer"])
    assert len(data["values"][0]) == len(data["labels"]["head"])
    assert data["normalized"] is True and data["statistic"] == "ratio_of_means"
    assert len(data["raw"]) == len(data["clean"]) == len(data["corrupted"]) == 6
    assert data["config"]["what"] == "heads" and data["config"]["method"] == "exact"


def test_bootstrap_interval_brackets_the_estimate(heads):
    lo, hi = heads.bootstrap_ci(n_resamples=200, seed=1)
    assert lo.shape == hi.shape == heads.values.shape
    assert bool((lo <= heads.values + 1e-6).all() and (heads.values <= hi + 1e-6).all())
    assert torch.equal(heads.bootstrap_ci(n_resamples=200, seed=1)[0], lo)  # seeded


def test_statistic_on_all_rows_is_values(heads):
    torch.testing.assert_close(heads.statistic(torch.arange(6)), heads.values)
    assert heads.stderr().shape == heads.values.shape


def test_top_names_cells(heads):
    top = heads.top(3)
    assert len(top) == 3 and top[0][0].startswith("L") and " H" in top[0][0]
    assert abs(top[0][1]) >= abs(top[1][1]) >= abs(top[2][1])


def test_one_degenerate_example_is_nan_only_in_its_row():
    raw = torch.tensor([[1.0, 2.0], [0.5, 0.5]])
    clean, corrupted = torch.tensor([2.0, 1.0]), torch.tensor([0.0, 1.0])
    with pytest.warns(DegenerateNormalizationWarning, match="1 of 2 examples"):
        res = PatchResult.build(raw, clean, corrupted, axes=("head",), labels={"head": ["0", "1"]},
                                metric="logit_diff", normalize=True, config={"what": "x"})
    assert not res.degenerate and res.degenerate_examples == (1,)
    assert bool(torch.isnan(res.per_example[1]).all()) and not bool(torch.isnan(res.per_example[0]).any())
    torch.testing.assert_close(res.values, (raw.mean(0) - 0.5) / 1.0)


def test_top_cells_are_those_whose_patch_moves_the_metric_most():
    # A cell that changes nothing is at the run patched into: 0 (normalised) when denoising, but 1 when
    # noising and the clean or corrupted mean without normalising. Ranked by |value|, `patch --direction
    # noise` listed the bundled model's idle heads (+1.00) as its top cells and left out L0H2, the head
    # that carries the adjective (its noised value is about 0).
    import circuitwise as cw

    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=8), need_corrupted=True, on_invalid="drop")
    runs = {(d, norm): activation_patching(model, tok, "heads", direction=d, normalize=norm)
            for d in ("denoise", "noise") for norm in (True, False)}
    assert runs["noise", True].unpatched == 1.0 and runs["denoise", True].unpatched == 0.0
    assert runs["noise", False].unpatched == pytest.approx(float(runs["noise", False].clean.mean()))
    assert runs["denoise", False].unpatched == pytest.approx(float(runs["denoise", False].corrupted.mean()))
    for res in runs.values():
        top = res.top(8)
        assert top[0][0] == "L0 H2", (res.config["direction"], res.normalized, top)
        moved = [abs(v - res.unpatched) for _, v in top]
        assert moved == sorted(moved, reverse=True)
