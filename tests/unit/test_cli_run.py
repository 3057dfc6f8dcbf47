"""`circuitwise prompt` and `circuitwise run`, end to end on random-weight GPT-2 checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from circuitwise.cli import _register, app

_register()
runner = CliRunner()

# The seed notebook's printed tokenizations ("Prompt as tokens: …").
SEED_TOKENS = {
    "A tortoise is old, but a kitten is": ['<|endoftext|>', 'A', ' tort', 'oise', ' is', ' old', ',', ' but', ' a', ' kitten', ' is'],
    "A mouse is small, but, an elephant is": ['<|endoftext|>', 'A', ' mouse', ' is', ' small', ',', ' but', ',', ' an', ' elephant', ' is'],
    "A desert is dry, but a rainforest is": ['<|endoftext|>', 'A', ' desert', ' is', ' dry', ',', ' but', ' a', ' rain', 'forest', ' is'],
    "A pillow is soft, but, a brick is": ['<|endoftext|>', 'A', ' pillow', ' is', ' soft', ',', ' but', ',', ' a', ' brick', ' is'],
    "A rock is hard, but, a sponge is": ['<|endoftext|>', 'A', ' rock', ' is', ' hard', ',', ' but', ',', ' a', ' sponge', ' is'],
    "A rose is beautiful, but, a weed is": ['<|endoftext|>', 'A', ' rose', ' is', ' beautiful', ',', ' but', ',', ' a', ' weed', ' is'],
}


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


@pytest.mark.parametrize("prompt", list(SEED_TOKENS))
def test_prompt_json_tokenizes_like_the_seed(tiny_ckpt, prompt):
    r = invoke("prompt", prompt, "--answer", "young", "--model", str(tiny_ckpt), "--json", "--top-k", "4")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["prompt_tokens"] == SEED_TOKENS[prompt]
    assert data["answer_tokens"] == [" young"]
    assert set(data["answer"]) == {"token", "rank", "logit", "prob"}
    assert len(data["top_k"]) == 4
    probs = [t["prob"] for t in data["top_k"]]
    assert probs == sorted(probs, reverse=True)
    assert data["answer"]["rank"] >= 0


def test_prompt_json_numbers_equal_transformerlens(tiny_ckpt, tiny_model):
    prompt = "A tortoise is old, but a kitten is"
    r = invoke("prompt", prompt, "--answer", " young", "--model", str(tiny_ckpt), "--json", "--top-k", "3")
    data = json.loads(r.stdout)
    logits = tiny_model(tiny_model.to_tokens(prompt))[0, -1]
    young = tiny_model.to_single_token(" young")
    assert data["answer"]["logit"] == pytest.approx(float(logits[young]), abs=1e-4)
    assert data["answer"]["prob"] == pytest.approx(float(logits.softmax(-1)[young]), rel=1e-4)
    assert data["answer"]["rank"] == int((logits > logits[young]).sum())
    assert data["top_k"][0]["logit"] == pytest.approx(float(logits.max()), abs=1e-4)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_run_on_jsonl_equals_transformerlens(tmp_path, small_ckpt, small_model):
    rows = [
        {"clean": "A tortoise is old, but a kitten is", "correct": " young", "incorrect": " old"},
        {"clean": "A mouse is small, but, an elephant is", "correct": " big", "incorrect": " small"},
        {"clean": "A desert is dry, but a rainforest is", "correct": " wet", "incorrect": " dry"},
    ]
    task = _write_jsonl(tmp_path / "t.jsonl", rows)
    out = tmp_path / "run"
    r = invoke("run", str(task), "--model", str(small_ckpt), "--out", str(out), "--batch-size", "2", "--top-k", "2")
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and res["task"]["n_prompts"] == 3
    assert res["model"]["n_layers"] == 4 and res["model"]["n_heads"] == 4

    m = small_model
    tokens = m.to_tokens([r["clean"] for r in rows])
    assert all(len(m.to_str_tokens(r["clean"])) == tokens.shape[1] for r in rows)  # TL reads pos -1
    answers = torch.tensor([[m.to_single_token(r["correct"]), m.to_single_token(r["incorrect"])] for r in rows])
    logits, cache = m.run_with_cache(tokens)
    al = logits[:, -1].gather(-1, answers)
    ld = al[:, 0] - al[:, 1]
    dirs = m.tokens_to_residual_directions(answers)
    dirs = dirs[:, 0] - dirs[:, 1]
    proj = lambda s: (cache.apply_ln_to_stack(s, layer=-1, pos_slice=-1) * dirs).sum(-1).mean(-1)  # noqa: E731
    heads = proj(cache.stack_head_results(layer=-1, pos_slice=-1)).reshape(4, 4)

    assert res["baseline"]["logit_diff"]["per_prompt"] == pytest.approx(ld.tolist(), abs=1e-3)
    assert res["baseline"]["logit_diff"]["mean"] == pytest.approx(float(ld.mean()), abs=1e-3)
    assert res["baseline"]["accuracy"] == pytest.approx(float((ld > 0).float().mean()))
    assert res["dla"]["final_resid"] == pytest.approx(float(proj(cache["resid_post", -1][:, -1][None])[0]), abs=1e-3)
    torch.testing.assert_close(torch.tensor(res["dla"]["heads"]), heads, atol=1e-3, rtol=0)
    assert res["dla"]["logit_lens"]["values"] == pytest.approx(
        (cache.accumulated_resid(layer=-1, incl_mid=True, apply_ln=True, pos_slice=-1) * dirs).sum(-1).mean(-1).tolist(),
        abs=1e-3)  # the logit lens: each point through ln_final with its own statistics
    assert res["dla"]["layers"]["values"] == pytest.approx(proj(cache.decompose_resid(layer=-1, pos_slice=-1)).tolist(), abs=1e-3)
    assert res["dla"]["logit_lens"]["labels"][-1] == "final_post"
    flat = heads.flatten()
    assert [h["label"] for h in res["top_heads"]["positive"]] == [f"L{int(i) // 4}H{int(i) % 4}" for i in flat.topk(2).indices]
    assert [h["label"] for h in res["top_heads"]["negative"]] == [f"L{int(i) // 4}H{int(i) % 4}" for i in (-flat).topk(2).indices]
    # The exact config to re-run it.
    cfg = (out / "config.yaml").read_text()
    assert str(task) in cfg and str(small_ckpt) in cfg
    html = (out / "report.html").read_text()
    assert "fig-logit-lens" in html and "fig-heads" in html and "cv-positive" in html


def test_run_with_prompts_of_different_lengths_reads_each_at_its_own_end(tmp_path, small_ckpt, small_model):
    rows = [
        {"clean": "A tortoise is old, but a kitten is", "correct": " young", "incorrect": " old"},
        {"clean": "Ice is", "correct": " cold", "incorrect": " hot"},
        {"clean": "The very large and heavy elephant is big, but the mouse is", "correct": " small", "incorrect": " big"},
    ]
    out = tmp_path / "run"
    r = invoke("run", str(_write_jsonl(tmp_path / "t.jsonl", rows)), "--model", str(small_ckpt), "--out", str(out))
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    for i, row in enumerate(rows):
        logits = small_model(small_model.to_tokens(row["clean"]))[0, -1]
        alone = logits[small_model.to_single_token(row["correct"])] - logits[small_model.to_single_token(row["incorrect"])]
        assert res["baseline"]["logit_diff"]["per_prompt"][i] == pytest.approx(float(alone), abs=1e-4)


def test_rerun_from_written_config_gives_the_same_numbers(tmp_path, tiny_ckpt):
    out = tmp_path / "a"
    assert invoke("run", "opposites-seed", "--model", str(tiny_ckpt), "--out", str(out)).exit_code == 0
    first = json.loads((out / "results.json").read_text())
    assert invoke("run", "--config", str(out / "config.yaml")).exit_code == 0
    again = json.loads((out / "results.json").read_text())
    assert again["baseline"] == first["baseline"] and again["dla"] == first["dla"]


def test_report_escapes_prompt_text(tmp_path, tiny_ckpt):
    rows = [{"clean": "<script>alert(1)</script> A tortoise is old, but a kitten is", "correct": " young", "incorrect": " old"}]
    out = tmp_path / "run"
    r = invoke("run", str(_write_jsonl(tmp_path / "x.jsonl", rows)), "--model", str(tiny_ckpt), "--out", str(out))
    assert r.exit_code == 0, r.output
    html = (out / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert '<span class="tok">&lt;</span>' in html  # the "<" token, escaped


def test_run_patching_section_obeys_the_invariants(tmp_path, tiny_ckpt):
    """Layer-0 resid_pre at the one position where clean and corrupted differ restores everything (1);
    at every other position it changes nothing (0). Attribution agrees with the exact sweep there."""
    out = tmp_path / "run"
    r = invoke("run", "opposites-seed", "--model", str(tiny_ckpt), "--out", str(out), "--patch", "resid_pre")
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    sweep = res["patching"]["resid_pre"]
    assert sweep["axes"] == ["layer", "pos"] and sweep["normalized"]
    checked = 0
    for e, ex in enumerate(res["task"]["examples"]):
        row0 = sweep["per_example"][e][0]
        if e in sweep["degenerate_examples"]:  # near-zero gap: normalised values are undefined (None)
            assert all(v is None for v in row0)
            continue
        # The clean prompt's first adjective (the incorrect answer) is the only token the flip changes.
        differ = [i for i, t in enumerate(ex["tokens"]) if t == ex["incorrect"]]
        assert len(differ) == 1
        assert row0[differ[0]] == pytest.approx(1.0, abs=1e-4)
        assert all(v == pytest.approx(0.0, abs=1e-4) for i, v in enumerate(row0) if i != differ[0])
        checked += 1
    assert checked >= 4
    assert -1.0 <= sweep["attribution"]["correlation"] <= 1.0


def test_circuit_options_reach_the_config_and_options_that_do_not_apply_fail_first(tmp_path, tiny_ckpt):
    from circuitwise.errors import ConfigError

    with pytest.raises(ConfigError, match="no option 'steps'.*gradient"):
        invoke("run", "opposites-seed", "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"), "--circuit", "eap",
               "--circuit-option", "steps=3")
    with pytest.raises(ConfigError, match="ig_steps applies to the integrated-gradient methods"):
        invoke("run", "opposites-seed", "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"), "--circuit", "exact",
               "--ig-steps", "3")
    assert not (tmp_path / "o").exists()
    from circuitwise.config import RunConfig

    cfg = RunConfig.build(task="opposites-seed", circuit="eap", circuit_options={"gradient": "corrupted"})
    assert cfg.method_options().gradient == "corrupted"
    (tmp_path / "c.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    assert RunConfig.from_yaml(tmp_path / "c.yaml").method_options() == cfg.method_options()
