"""Training transcoders: a planted set reproduces its MLP exactly, training learns, is seeded, and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from circuitwise.errors import ConfigError, Interrupted, TranscoderError
from circuitwise.features.formats import load_transcoders, save_transcoders
from circuitwise.features.train import (
    TrainOptions,
    capture,
    mlp_hooks,
    replaced_logits,
    tokenize,
    train_transcoders,
    transcoder_card,
)
from circuitwise.features.transcoder import Transcoder, TranscoderSet

NAMES = ("Mary", "John", "Alice", "Bob", "Kate", "Tom")
PLACES = ("store", "park", "school", "beach")
TEXTS = [f"When {a} and {b} went to the {p}, {b} gave a book to {a}. It was {n} o'clock."
         for a in NAMES for b in NAMES if a != b for p in PLACES for n in ("one", "two")][:160]
TINY = TrainOptions(width=32, k=4, tokens=8 * 256, batch_tokens=256, chunk_rows=24, heldout_tokens=300, seq_len=32,
                    checkpoint_every=2, lr=3e-3)


@pytest.fixture(scope="module")
def relu_model(tmp_path_factory):
    """A tiny GPT-2 whose MLPs use ReLU: a transcoder can be its MLP exactly."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import circuitwise as cw
    from tests.helpers import gpt2_tokenizer_files

    out = tmp_path_factory.mktemp("relu_gpt2")
    gpt2_tokenizer_files(out)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50257, activation_function="relu")
    m = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
            else:
                p.add_(0.1 * torch.randn_like(p))  # biases and norm weights away from their defaults
    m.save_pretrained(out, safe_serialization=True)
    return cw.load_model(str(out), device="cpu")


def planted(model, activation="relu") -> TranscoderSet:
    """The MLP itself as a transcoder: its neurons are the features, no skip path."""
    ts = []
    for l in range(model.cfg.n_layers):
        d_mlp = model.W_in[l].shape[1]
        ts.append(Transcoder(l, model.W_in[l].detach().clone(), model.b_in[l].detach().clone(),
                             model.W_out[l].detach().clone(), model.b_out[l].detach().clone(), activation=activation,
                             k=d_mlp if activation == "topk" else None,
                             threshold=torch.zeros(d_mlp) if activation == "jumprelu" else None))
    return TranscoderSet(tuple(ts), model="relu")


@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk"])
def test_planted_transcoders_are_the_mlp(relu_model, activation):
    ts = planted(relu_model, activation)
    ids = tokenize(relu_model, TEXTS[:4], 32)
    rows = torch.stack([r[:12] for r in ids])
    with torch.no_grad():
        want = relu_model(rows)
    torch.testing.assert_close(replaced_logits(relu_model, ts, rows), want, rtol=1e-5, atol=1e-4)
    card = transcoder_card(relu_model, ts, ids[:6])
    assert max(card["fvu"]) < 1e-10 and card["kl"] < 1e-8 and card["top1_agreement"] == 1.0


def test_replacement_takes_effect(relu_model):
    """A change in one decoder row changes the replaced logits (the hooks do replace the MLPs)."""
    ts = planted(relu_model)
    rows = torch.stack([r[:12] for r in tokenize(relu_model, TEXTS[:2], 32)])
    t0 = ts[0]
    W_dec = t0.W_dec + torch.randn(t0.W_dec.shape, generator=torch.Generator().manual_seed(0))
    bent = TranscoderSet((Transcoder(0, t0.W_enc, t0.b_enc, W_dec, t0.b_dec), ts[1]))
    assert (replaced_logits(relu_model, bent, rows) - replaced_logits(relu_model, ts, rows)).abs().max() > 1e-2


def test_mlp_hooks_and_capture(tiny_model):
    ins, outs = mlp_hooks(tiny_model, "mlp_in")
    assert ins == ["blocks.0.mlp.hook_in", "blocks.1.mlp.hook_in"] and outs[1] == "blocks.1.hook_mlp_out"
    assert mlp_hooks(tiny_model, "resid_mid")[0][0] == "blocks.0.hook_resid_mid"
    rows = tokenize(tiny_model, TEXTS[:3], 32)
    xs, ys = capture(tiny_model, rows, "mlp_in", batch_rows=2)
    assert xs[0].shape == (sum(r.numel() for r in rows), 64)
    _, cache = tiny_model.run_with_cache(rows[1][None])
    n0 = rows[0].numel()
    torch.testing.assert_close(ys[1][n0:n0 + rows[1].numel()], cache["blocks.1.hook_mlp_out"][0])


def test_parallel_family_hooks(family_model_for):
    """Parallel attention + MLP (Pythia): the MLP reads its own norm of the block's input."""
    model = family_model_for("pythia")
    assert model.cfg.parallel_attn_mlp
    ins, _ = mlp_hooks(model, "resid_mid")
    assert ins[0] == "blocks.0.hook_resid_pre"
    rows = tokenize(model, ["A short sentence to read."], 16)
    xs, ys = capture(model, rows, "mlp_in")
    assert xs[0].shape[0] == ys[0].shape[0] == rows[0].numel()


def test_capture_reads_a_hook_that_is_an_alias_of_another(family_model_for):
    """OLMo 2's MLP has no norm in front (its norm comes after), so the bridge's blocks.L.mlp.hook_in is the
    hook point blocks.L.hook_resid_mid and fires under that name: capture keyed what it stored by the firing
    name and then found nothing under the one it asked for (KeyError; transcoder training failed on OLMo 2)."""
    model = family_model_for("olmo2")
    ins, outs = mlp_hooks(model, "mlp_in")
    assert ins[0] == "blocks.0.mlp.hook_in"
    rows = tokenize(model, ["A short sentence to read.", "And another one"], 16)
    xs, ys = capture(model, rows, "mlp_in")
    _, cache = model.run_with_cache(rows[0][None])
    n0 = rows[0].numel()
    for l in range(model.cfg.n_layers):
        torch.testing.assert_close(xs[l][:n0], cache[f"blocks.{l}.hook_resid_mid"][0].float())
        torch.testing.assert_close(ys[l][:n0], cache[f"blocks.{l}.hook_mlp_out"][0].float())


@pytest.mark.slow
def test_training_learns_and_is_seeded(tiny_model, tmp_path):
    a = train_transcoders(tiny_model, TEXTS, TINY, model_name="tiny")
    b = train_transcoders(tiny_model, TEXTS, TINY, model_name="tiny")
    for s, t in zip(a.transcoders, b.transcoders, strict=True):
        assert torch.equal(s.W_enc, t.W_enc) and torch.equal(s.W_dec, t.W_dec) and torch.equal(s.W_skip, t.W_skip)
    card = a.meta["card"]
    # The skip path alone (a linear map) already explains most of a random MLP; features add to it.
    assert all(0 <= f < 0.5 for f in card["fvu"]) and card["l0"] == [4.0, 4.0]
    assert 0 <= card["top1_agreement"] <= 1 and card["kl"] >= 0
    # The card's FVU is the saved set's, recomputed
    save_transcoders(a, tmp_path / "tc")
    back = load_transcoders(tmp_path / "tc")
    rows = tokenize(tiny_model, TEXTS, TINY.seq_len)
    held = rows[-card["heldout_rows"]:]
    again = transcoder_card(tiny_model, back, held)
    assert again["fvu"] == pytest.approx(card["fvu"], rel=1e-5)
    assert again["kl"] == pytest.approx(card["kl"], rel=1e-4)
    assert json.loads((tmp_path / "tc" / "card.json").read_text())["card"]["fvu"] == pytest.approx(card["fvu"])
    c = train_transcoders(tiny_model, TEXTS, TrainOptions(**{**TINY.__dict__, "seed": 1}))
    assert not torch.equal(c[0].W_enc, a[0].W_enc)


@pytest.mark.slow
def test_features_beat_the_skip_path_alone(tiny_model):
    no_feat = TrainOptions(**{**TINY.__dict__, "lr": 1e-12, "tokens": 256})  # the least-squares start only
    base = train_transcoders(tiny_model, TEXTS, no_feat).meta["card"]["fvu"]
    learnt = train_transcoders(tiny_model, TEXTS, TINY).meta["card"]["fvu"]
    assert all(f < b for f, b in zip(learnt, base, strict=True))


class _Stop(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("how", ["interrupt", "crash"])
def test_resume_gives_the_same_weights(tiny_model, tmp_path, how):
    whole = train_transcoders(tiny_model, TEXTS, TINY, model_name="tiny")

    def stop_at(n):
        def progress(step, total, info):
            if step == n:
                raise KeyboardInterrupt if how == "interrupt" else _Stop
        return progress

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupted if how == "interrupt" else _Stop):
        train_transcoders(tiny_model, TEXTS, TINY, model_name="tiny", checkpoint_dir=ckpt, progress=stop_at(5))
    kept = json.loads((ckpt / "checkpoint.json").read_text())["step"]
    assert kept == (5 if how == "interrupt" else 4)  # an interrupt saves where it stopped; a crash the last one
    seen = []
    resumed = train_transcoders(tiny_model, TEXTS, TINY, model_name="tiny", checkpoint_dir=ckpt,
                                progress=lambda s, t, i: seen.append(s))
    assert seen[0] == kept + 1 and resumed.meta["training"]["resumed_at"] == kept
    for s, t in zip(whole.transcoders, resumed.transcoders, strict=True):
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "W_skip"):
            assert torch.equal(getattr(s, name), getattr(t, name)), name
    assert resumed.meta["card"] == whole.meta["card"]


@pytest.mark.slow
def test_checkpoint_of_other_options_refused(tiny_model, tmp_path):
    with pytest.raises(Interrupted):
        def stop(step, total, info):
            if step == 2:
                raise KeyboardInterrupt
        train_transcoders(tiny_model, TEXTS, TINY, checkpoint_dir=tmp_path, progress=stop)
    with pytest.raises(TranscoderError, match="other options"):
        train_transcoders(tiny_model, TEXTS, TrainOptions(**{**TINY.__dict__, "k": 3}), checkpoint_dir=tmp_path)
    # a damaged checkpoint is not used: training starts again
    (tmp_path / "checkpoint.safetensors").write_bytes(b"junk")
    ts = train_transcoders(tiny_model, TEXTS, TINY, checkpoint_dir=tmp_path)
    assert ts.meta["training"]["resumed_at"] is None


@pytest.mark.slow
def test_jumprelu_and_cross_layer(tiny_model):
    jr = train_transcoders(tiny_model, TEXTS, TrainOptions(**{**TINY.__dict__, "activation": "jumprelu"}))
    assert jr[0].activation == "jumprelu" and jr[0].threshold is not None and (jr[0].threshold > 0).all()
    assert all(f < 0.5 for f in jr.meta["card"]["fvu"]) and all(0 < z < 32 for z in jr.meta["card"]["l0"])
    clt = train_transcoders(tiny_model, TEXTS, TrainOptions(**{**TINY.__dict__, "cross_layer": True}))
    assert clt.cross_layer and clt[0].W_dec.shape == (32, 2, 64) and clt[1].W_dec.shape == (32, 1, 64)
    assert all(f < 0.5 for f in clt.meta["card"]["fvu"])


def test_bad_options(tiny_model):
    with pytest.raises(ConfigError, match="k is 40"):
        train_transcoders(tiny_model, TEXTS, TrainOptions(width=32, k=40))
    with pytest.raises(ConfigError, match="not enough"):
        train_transcoders(tiny_model, TEXTS[:3], TrainOptions(width=32, k=4, heldout_tokens=10_000))


def test_a_corpus_too_short_for_its_held_out_tokens_names_the_flag():
    from circuitwise.features.train import split_heldout

    rows = [torch.arange(14), torch.arange(13)]
    with pytest.raises(ConfigError, match=r"fewer held-out tokens \(--heldout-tokens N"):
        split_heldout(rows, 16384)
    train, held = split_heldout(rows, 10)  # the fix it names works: the last row held out, one to train on
    assert [r.numel() for r in train] == [14] and [r.numel() for r in held] == [13]
