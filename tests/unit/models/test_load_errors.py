"""Every way a load can fail ends in a ModelLoadError that says what to do — never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

import circuitwise as cw
from circuitwise.cli import _register, app
from circuitwise.errors import ModelLoadError

_register()
runner = CliRunner()


@pytest.fixture()
def folder(tmp_path, family_ckpt_llama):
    """A writable copy of a small Llama checkpoint, to break in each test."""
    out = tmp_path / "model"
    shutil.copytree(family_ckpt_llama, out)
    return out


@pytest.fixture(scope="module")
def family_ckpt_llama(tmp_path_factory):
    from tests.families import make_family_checkpoint

    return make_family_checkpoint("llama", tmp_path_factory.mktemp("llama") / "llama", n_layers=1)


def _config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_broken_config_json_names_the_file_and_the_fix(folder):
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"config\.json is not valid JSON.*save_pretrained"):
        cw.load_model(str(folder), device="cpu")


def test_config_without_model_type(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("model_type")
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="no \"model_type\""):
        cw.load_model(str(folder), device="cpu")


def test_unknown_model_type_says_check_or_upgrade(folder):
    _config(folder, model_type="florp")
    with pytest.raises(ModelLoadError, match=r"does not know the model_type.*upgrade transformers"):
        cw.load_model(str(folder), device="cpu")


def test_folder_without_tokenizer_files(folder):
    for f in folder.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            f.unlink()
    with pytest.raises(ModelLoadError, match=r"no tokenizer files.*tokenizer\.save_pretrained"):
        cw.load_model(str(folder), device="cpu")


def test_damaged_weights(folder):
    (folder / "model.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(ModelLoadError, match="damaged or incomplete"):
        cw.load_model(str(folder), device="cpu")


def test_tl_assertion_during_processing_suggests_no_processing(folder, monkeypatch):
    from transformer_lens.weight_processing import ProcessWeights

    def refuse(*a, **k):
        raise AssertionError("You can't fold this")

    monkeypatch.setattr(ProcessWeights, "process_weights", staticmethod(refuse))
    with pytest.raises(ModelLoadError, match=r"weight processing.*AssertionError.*--no-processing"):
        cw.load_model(str(folder), device="cpu")
    # ...and the advice works: without processing the same folder loads.
    assert cw.load_model(str(folder), device="cpu", processing=False).circuitwise_processing.requested is False


def test_tl_runtime_error_at_boot(folder, monkeypatch):
    from transformer_lens.model_bridge import TransformerBridge

    def boom(*a, **k):
        raise RuntimeError("adapter exploded")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", staticmethod(boom))
    with pytest.raises(ModelLoadError, match=r"TransformerLens cannot bridge.*RuntimeError: adapter exploded"):
        cw.load_model(str(folder), device="cpu")


def test_out_of_memory_says_free_memory_or_change_device(folder, monkeypatch):
    from transformer_lens.model_bridge import TransformerBridge

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", staticmethod(oom))
    with pytest.raises(ModelLoadError, match=r"Not enough memory on cpu.*--device"):
        cw.load_model(str(folder), device="cpu")


@pytest.mark.parametrize("command", ["prompt", "run"])
def test_cli_shows_the_message_without_a_traceback(folder, tmp_path, command):
    (folder / "config.json").write_text("{not json")
    args = {"prompt": ["prompt", "A tortoise is old, but a kitten is", "-a", " young"],
            "run": ["run", "opposites", "--out", str(tmp_path / "o")]}[command]
    result = runner.invoke(app, [*args, "--model", str(folder)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ModelLoadError), repr(result.exception)


def test_a_masked_language_model_is_refused_not_misread(tmp_path):
    # TransformerLens boots BERT, but its logits are no next-token answer.
    from transformers import BertConfig, BertForMaskedLM

    from tests.helpers import gpt2_tokenizer_files

    out = gpt2_tokenizer_files(tmp_path / "bert")
    cfg = BertConfig(vocab_size=50257, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)
    BertForMaskedLM(cfg).save_pretrained(out, safe_serialization=True)
    with pytest.raises(ModelLoadError, match=r"BertForMaskedLM, not a causal \(decoder-only\) language model"):
        cw.load_model(str(out), device="cpu")
