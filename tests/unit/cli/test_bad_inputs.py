"""Bad inputs found in the acceptance audit of issue 22 (items 5-9): each is refused before any model
loads, with a message that names the flags of the command in hand."""

from __future__ import annotations

import pytest

from tests.unit.cli.conftest import invoke


@pytest.mark.parametrize("command", [["run", "opposites"], ["circuit", "opposites"], ["compare", "opposites"]])
def test_a_circuit_option_that_is_not_key_value_names_the_flag_of_the_command(tmp_path, no_model_loads, command):
    r = invoke(*command, "-O", "justakey", "--out", tmp_path / "o")
    # It said '--option … write e.g. --option steps=10': circuit's old hidden spelling, unknown to run and compare.
    assert r.exit_code == 2 and "--circuit-option 'justakey' is not KEY=VALUE" in r.output, r.output
    assert "--option" not in r.output.replace("--circuit-option", "")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_threshold_that_is_not_finite_is_refused_before_the_model_loads(tmp_path, no_model_loads, value):
    # nan was refused by the selection, after the model loaded and the edges were scored.
    r = invoke("circuit", "opposites", "--selection", "threshold", "--threshold", value, "--out", tmp_path / "o")
    assert r.exit_code == 2 and f"--threshold {float(value)}: give a finite number" in r.output, r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("model_b", ["/no/such/checkpoint", "gpt2"], ids=["missing-folder", "hub-offline"])
def test_compare_checks_side_bs_model_before_side_as_loads(tmp_path, monkeypatch, no_model_loads, model_b):
    import circuitwise.models.hub as hub

    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(hub, "in_hub_cache", lambda name: False)
    r = invoke("compare", "opposites", "--model", "bundled", "--model-b", model_b, "--out", tmp_path / "o")
    # It loaded side A's model, then failed on B's.
    expected = "No such model folder" if model_b.startswith("/") else "Offline options"
    assert r.exit_code == 2 and expected in r.output and model_b in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag,value", [("--lr", "nan"), ("--lr", "inf"), ("--lr", "-0.1")])
def test_transcoders_train_refuses_a_learning_rate_that_is_not_a_positive_number(tmp_path, no_model_loads, flag,
                                                                                 value):
    # --lr nan passed the check (nan <= 0 is false) and ended in torch's traceback after the model loaded.
    r = invoke("transcoders", "train", "bundled", "--corpus", "opposites", flag, value, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "lr and bandwidth must be finite numbers > 0" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_mib_checks_every_model_before_the_first_pairs_work(tmp_path, no_model_loads):
    # The second model's missing folder was found after the first model's pairs had run and been written.
    r = invoke("mib", "--task", "opp=opposites", "--model", "b=bundled,c=/no/such/checkpoint", "--circuit", "eap",
               "--n", "8", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "No such model folder: '/no/such/checkpoint'" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_prompt_longer_than_the_context_is_refused_with_its_length(tiny_ckpt):
    # to_tokens cut the prompt at the context (128), which left no answer token: an IndexError traceback.
    r = invoke("prompt", "word " * 300, "--answer", " a", "--model", tiny_ckpt)
    assert r.exit_code == 2 and "the model's context is 128. Shorten them." in r.output, r.output


def test_graph_of_a_prompt_longer_than_the_context_is_refused_not_cut(tmp_path):
    # A prompt over 255 bytes ended in an OSError traceback (File name too long, asking whether it was a task
    # file); one under that but over the context was graphed as its first 128 tokens without a word.
    import re

    for prompt in ("word " * 300, "🐢" * 60):  # 1,500 bytes; 240 bytes, 240 tokens
        r = invoke("graph", prompt, "--model", "bundled", "--transcoders", "bundled", "--out", tmp_path / "o")
        assert r.exit_code == 2 and re.search(r"The prompt is \d+ tokens; the model's context is 128", r.output), \
            r.output
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["tasks", "show", "x" * 300], ["transcoders", "card", "x" * 300],
                                  ["run", "x" * 300, "--out", "OUT"]])
def test_a_name_longer_than_a_file_name_is_an_input_error_not_a_traceback(tmp_path, monkeypatch, capsys, args):
    # Asking whether it is a file raised OSError (File name too long) from a dozen places: a traceback, exit 1.
    import signal
    import sys

    import circuitwise.cli as cli

    monkeypatch.setattr(sys, "argv", ["circuitwise", *[str(tmp_path / "o") if a == "OUT" else a for a in args]])
    old = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as e:
            cli.main()
    finally:
        signal.signal(signal.SIGTERM, old)
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and "(300 characters) is too long for a file or folder name" in err, err
    assert not (tmp_path / "o").exists()


def test_an_out_longer_than_a_file_name_is_an_output_error(tmp_path, no_model_loads):
    r = invoke("patch", "opposites", "--out", tmp_path / ("x" * 300))
    assert r.exit_code == 3 and "File name too long" in r.output and "Choose another --out" in r.output, r.output


def test_a_hub_name_offline_is_refused_before_transformerlens_is_imported(tmp_path):
    # load_model imported TransformerLens (about 4 s) before its one Hub check: run --model gpt2 offline took
    # 6.5 s of CPU to fail, 2.6 s now (the rest is the command's own start-up); load_tokenizer imported
    # transformers' AutoTokenizer first (about 1 s).
    import os
    import subprocess
    import sys

    code = ("import sys\n"
            "from circuitwise.errors import ModelLoadError, TaskError\n"
            "from circuitwise.models import load_model\n"
            "from circuitwise.tasks.tokenizer import load_tokenizer\n"
            "try:\n    load_model('gpt2')\nexcept ModelLoadError as e:\n    print('refused:', e)\n"
            "try:\n    load_tokenizer('gpt2')\nexcept TaskError as e:\n    print('refused too:', e)\n"
            "print('imported:', any(m in sys.modules for m in ('transformer_lens.model_bridge', "
            "'transformers.models.auto.tokenization_auto')))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "refused: The Hugging Face Hub cannot be reached" in out and "Offline options" in out, out
    assert "refused too: The Hugging Face Hub cannot be reached" in out, out  # `tasks show --model gpt2`
    assert "imported: False" in out, out


@pytest.mark.parametrize("command", [["graph", "opposites", "--transcoders", "bundled"],
                                     ["transcoders", "train", "bundled", "--corpus", "opposites"]])
def test_an_out_under_a_file_is_refused_before_the_plan(tmp_path, no_model_loads, command):
    # Found only when the lock was taken: graph and transcoders train had read their inputs and printed their plan.
    f = tmp_path / "f"
    f.write_text("precious")
    r = invoke(*command, "--out", f / "sub" / "o")
    assert r.exit_code == 3 and f"lies under {f}, which is a file" in r.output and "plan:" not in r.output, r.output
    assert f.read_text() == "precious"
