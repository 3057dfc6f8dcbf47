"""A planted-feature model: OPT (ReLU MLPs) with one neuron set by hand to read token X and write token
Y's unembedding; its transcoders are the MLPs themselves (a ReLU transcoder with W_enc = W_in …), so
every error node off BOS is zero up to rounding and the path X → neuron → logit Y is known."""

from __future__ import annotations

from pathlib import Path

import torch

from circuitwise.features.transcoder import Transcoder, TranscoderSet

TOK_X, TOK_Y, NEURON, LAYER = 3797, 1862, 0, 1  # " cat", " young"


def planted_checkpoint(out: Path) -> Path:
    from transformers import AutoModelForCausalLM

    from tests.families import make_family_checkpoint

    ck = make_family_checkpoint("opt", out, seed=0)
    hf = AutoModelForCausalLM.from_pretrained(str(ck))
    with torch.no_grad():
        E = hf.model.decoder.embed_tokens.weight  # tied with the unembedding
        unit = lambda v: (v - v.mean()) / (v - v.mean()).norm()  # noqa: E731
        layer = hf.model.decoder.layers[LAYER]
        layer.fc1.weight[NEURON] = 8.0 * unit(E[TOK_X])
        layer.fc1.bias[NEURON] = -3.0
        layer.fc2.weight[:, NEURON] = 3.0 * unit(E[TOK_Y])
    hf.save_pretrained(str(ck))
    return ck


def mlp_transcoders(model) -> TranscoderSet:
    """The model's own ReLU MLPs as transcoders (processed weights: the MLP's normed input in, its output out)."""
    return TranscoderSet(tuple(
        Transcoder(l, model.W_in[l].detach().clone(), model.b_in[l].detach().clone(), model.W_out[l].detach().clone(),
                   model.b_out[l].detach().clone(), activation="relu") for l in range(model.cfg.n_layers)),
        model="planted")
