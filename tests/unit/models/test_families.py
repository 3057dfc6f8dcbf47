"""Every family TransformerLens 4.3 boots loads, runs, and keeps Hugging Face's logit differences."""

from __future__ import annotations

import pytest
import torch

PROMPT = "A tortoise is old, but a kitten is very small and"  # longer than the 4-token windows
ANSWERS = (" young", " old")


def _hf_model(family: str, path):
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM

    cls = Gemma3ForCausalLM if family == "gemma3" else AutoModelForCausalLM
    # Eager attention: the reference TL compares against, and the one that honours soft-caps.
    return cls.from_pretrained(str(path), attn_implementation="eager").float().eval()


def test_family_loads_and_matches_hf_logit_diff(family_ckpt, family_model):
    family, path = family_ckpt
    model = family_model
    tok = model.tokenizer
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    if model.cfg.default_prepend_bos:
        ids = torch.cat([torch.tensor([[tok.bos_token_id]]), ids], dim=1)
    assert ids.shape[1] > 8
    a, b = (tok(x, add_special_tokens=False)["input_ids"] for x in ANSWERS)
    assert len(a) == len(b) == 1
    with torch.inference_mode():
        ours = model(ids)[0]
        theirs = _hf_model(family, path)(ids).logits[0]
    assert theirs.std() > 0.1, "degenerate fixture: scale its weights up"
    diff_ours = (ours[-1, a[0]] - ours[-1, b[0]]).item()
    diff_hf = (theirs[-1, a[0]] - theirs[-1, b[0]]).item()
    assert diff_ours == pytest.approx(diff_hf, abs=1e-4)
    # Every logit difference at every position: compatibility mode shifts logits by a constant.
    centred = lambda x: x - x.mean(-1, keepdim=True)  # noqa: E731
    torch.testing.assert_close(centred(ours), centred(theirs), atol=1e-4, rtol=0)


def test_sliding_windows_are_really_on(family_ckpt):
    """A window shorter than the prompt must change the output, or the fixture tests nothing."""
    from tests.families import WINDOWED

    family, path = family_ckpt
    if family not in WINDOWED:
        pytest.skip(f"{family} has no sliding-window attention")
    from transformers import AutoConfig

    ids = torch.arange(1000, 1012)[None]
    windowed = _hf_model(family, path)
    cfg = AutoConfig.from_pretrained(str(path))
    for key in ("sliding_window", "window_size"):
        if getattr(cfg, key, None):
            setattr(cfg, key, 10_000)
    cls = type(windowed)
    wide = cls.from_pretrained(str(path), config=cfg, attn_implementation="eager").float().eval()
    with torch.inference_mode():
        assert not torch.allclose(windowed(ids).logits, wide(ids).logits, atol=1e-4)
