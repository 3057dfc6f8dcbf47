"""BOS follows each model's own convention (TransformerLens's ``cfg.default_prepend_bos``).

Pythia, Qwen2/3 and Phi prompts start without BOS; GPT-2, Llama, Gemma … with one. Token positions,
role positions and the numbers must all follow the convention, and answers are checked as one
token *in context* (``tokenizer.encode(" young")[0]`` is BOS on tokenizers that add it themselves).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from circuitwise.attribution import baseline
from circuitwise.cli import _register, app
from circuitwise.tasks import get_task, tokenize_task

_register()
runner = CliRunner()
PROMPT = "A tortoise is old, but a kitten is"
EOT = 50256


def _hf(family, path):
    from tests.unit.models.test_families import _hf_model

    return _hf_model(family, path)


def test_no_bos_families_are_the_ones_tl_says(family_model_for):
    flags = {f: family_model_for(f).cfg.default_prepend_bos for f in ("gpt2", "pythia", "qwen2", "phi", "llama")}
    # If TL changes its convention the tests below still hold; this one says which fixtures cover False.
    assert flags == {"gpt2": True, "pythia": False, "qwen2": False, "phi": False, "llama": True}


def test_tokenized_task_follows_the_convention_and_numbers_match_hf(family_ckpt, family_model):
    family, path = family_ckpt
    tok, dropped = tokenize_task(family_model, get_task("opposites-seed"))
    assert not dropped
    starts_with_bos = [row[0] == "<|endoftext|>" for row in tok.str_tokens]
    assert all(b == bool(family_model.cfg.default_prepend_bos) for b in starts_with_bos)
    # The logit difference circuitwise reports equals Hugging Face's on the same (convention) ids.
    ours = baseline(family_model, tok).logit_diff
    hf = _hf(family, path)
    with torch.inference_mode():
        for i in range(len(tok)):
            ids = tok.clean[i : i + 1, : int(tok.last[i]) + 1]
            logits = hf(ids).logits[0, -1]
            c, w = tok.answers[i].tolist()
            assert float(ours[i]) == pytest.approx(float(logits[c] - logits[w]), abs=1e-4)


def test_role_positions_shift_with_bos(family_model_for):
    task = get_task("ioi", n=4, seed=0)
    with_bos, _ = tokenize_task(family_model_for("gpt2"), task)
    without, _ = tokenize_task(family_model_for("pythia"), task)  # same tokenizer, no BOS
    for r_bos, r_plain, t_bos, t_plain in zip(with_bos.roles, without.roles, with_bos.str_tokens, without.str_tokens):
        assert {k: v - 1 for k, v in r_bos.items()} == r_plain
        assert all(t_bos[r_bos[k]] == t_plain[r_plain[k]] for k in r_bos)


def test_prompt_shows_no_bos_for_pythia_and_its_numbers_are_hfs(family_path_for):
    path = family_path_for("pythia")
    r = runner.invoke(app, ["prompt", PROMPT, "-a", " young", "--model", str(path), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["prepend_bos"] is False and data["prompt_tokens"][0] == "A"
    hf = _hf("pythia", path)
    from transformers import AutoTokenizer

    ids = torch.tensor([AutoTokenizer.from_pretrained(str(path))(PROMPT)["input_ids"]])
    with torch.inference_mode():
        logits = hf(ids).logits[0, -1]
    young = 1862
    assert data["answer"]["rank"] == int((logits > logits[young]).sum())
    assert data["answer"]["prob"] == pytest.approx(float(logits.softmax(-1)[young]), rel=1e-4)
    r = runner.invoke(app, ["prompt", PROMPT, "-a", " young", "--model", str(family_path_for("gpt2"))])
    assert "(BOS prepended, the model's convention)" in r.stdout


def test_tasks_show_tokenizes_like_the_model_without_loading_it(family_path_for):
    shown = {}
    for family in ("gpt2", "pythia"):
        r = runner.invoke(app, ["tasks", "show", "opposites-seed", "--n", "1", "--model", str(family_path_for(family))])
        assert r.exit_code == 0, r.output
        shown[family] = r.stdout
    assert "<|endoftext|>" in shown["gpt2"] and "<|endoftext|>" not in shown["pythia"]


@pytest.fixture(scope="module")
def bos_adding_tokenizer_model(family_path_for, tmp_path_factory):
    """Llama weights with a tokenizer that adds BOS itself, as Llama's and Gemma's real ones do."""
    from tokenizers import Tokenizer, processors

    import circuitwise as cw

    out = tmp_path_factory.mktemp("bos") / "llama"
    shutil.copytree(family_path_for("llama"), out)
    tk = Tokenizer.from_file(str(out / "tokenizer.json"))
    tk.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", EOT)])
    tk.save(str(out / "tokenizer.json"))
    return cw.load_model(str(out), device="cpu")


def test_a_tokenizer_that_adds_bos_gets_one_bos_and_the_right_answer_ids(bos_adding_tokenizer_model):
    m = bos_adding_tokenizer_model
    assert m.tokenizer.encode(" young")[0] == EOT  # the trap: the first id of the answer is BOS
    tok, dropped = tokenize_task(m, get_task("opposites-seed"))
    assert not dropped
    assert all(row.count("<|endoftext|>") == 1 and row[0] == "<|endoftext|>" for row in tok.str_tokens)
    assert EOT not in tok.answers.flatten().tolist()
    assert tok.answers[0].tolist() == [1862, 1468]  # ' young', ' old'
