"""Every engine is device-safe without a GPU: run on a virtual accelerator (tests/virtual_device.py).

On the CPU a tensor made without ``device=`` mixes silently with the model's activations; on CUDA
that raises, and on MPS any float64 tensor raises. The virtual accelerator follows each tensor's
device on the CPU and raises where CUDA (or, with ``mps=True``, MPS) would, so a missed ``device=``,
``.cpu()`` before ``.numpy()``, or float64 on the device fails here. A model split as
bench/device_check.py splits it (its second half of blocks on the host) checks that the engines
move what they carry between blocks. Numbers are the CPU's own, so they must equal a plain run's.

First, the checker itself: it raises on each kind of mistake and lets through what a GPU allows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import circuitwise as cw
from circuitwise.attribution.mechanism import mechanism_readouts
from circuitwise.circuits import graph_of, score_edges
from circuitwise.circuits.neurons import score_neurons
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from tests.virtual_device import (
    ACCELERATOR,
    DeviceMixError,
    model_on_accelerator,
    on_accelerator,
    split_to_host,
    virtual_device,
    where,
)

# -- the checker -----------------------------------------------------------------------------------


def _weights() -> torch.Tensor:
    w = torch.randn(3, 3)
    on_accelerator(w)
    return w


@pytest.mark.parametrize("mistake", [
    "matmul with a host tensor", "cat with a host tensor", "host mask", "numpy", "device index into host",
    "advanced assignment from host", "cpu generator on device", "embedding of host ids",
])
def test_the_checker_raises_where_cuda_would(mistake):
    w = _weights()
    with virtual_device() as vd:
        host = torch.ones(3)
        act = {
            "matmul with a host tensor": lambda: w @ host,
            "cat with a host tensor": lambda: torch.cat([w, host[None]]),
            "host mask": lambda: w.masked_fill(torch.zeros(3, 3, dtype=torch.bool), 0.0),
            "numpy": lambda: np.asarray((w + 1).numpy()),
            "device index into host": lambda: host[torch.tensor([0, 2], device=w.device)],
            "advanced assignment from host": lambda: w.__setitem__(torch.tensor([0]), host[None]),
            "cpu generator on device": lambda: torch.rand(3, generator=torch.Generator().manual_seed(0),
                                                          device=w.device),
            "embedding of host ids": lambda: torch.nn.functional.embedding(torch.tensor([0, 1]), w),
        }[mistake]
        with pytest.raises(DeviceMixError):
            act()
    assert len(vd.errors) == 1


def test_the_checker_allows_what_cuda_allows_and_follows_moves():
    w = _weights()
    with virtual_device() as vd:
        assert w.device == ACCELERATOR and torch.ones(1).device != ACCELERATOR
        made = torch.zeros(3, device=w.device)  # device= the model's: on the accelerator
        assert where(made) and where(w @ made)
        assert where(w[torch.tensor([0, 2])])  # a host index into a device tensor
        assert where(w * torch.tensor(2.0))  # a host scalar
        w[0:1] = torch.ones(1, 3)  # a basic-index assignment copies across devices
        moved = torch.ones(3).to(w.device)
        assert where(w @ moved) and where(moved.new_zeros(2)) and where(torch.zeros_like(moved))
        back = (w @ moved).cpu()
        assert where(back) is False and back.numpy().shape == (3,)
        assert where(moved) is True  # moving a copy leaves the original where it was
    assert vd.errors == []


def test_the_mps_checker_refuses_float64_on_the_device_only():
    from circuitwise.models import precision

    w = _weights()
    with virtual_device(mps=True) as vd:
        assert precision.wide_dtype(w.device) == torch.float32 and precision.wide_dtype("cpu") == torch.float64
        assert torch.zeros(2, dtype=torch.float64).dtype == torch.float64  # on the host: fine
        (w @ w).cpu().double()
        with pytest.raises(DeviceMixError, match="float64"):
            w.double()
    assert len(vd.errors) == 1
    assert precision.wide_dtype(ACCELERATOR) == torch.float64  # restored


def test_the_cost_models_clock_waits_for_the_gpu(monkeypatch):
    """models.cost times a product to estimate each stage: on a GPU it must wait for it (MPS too)."""
    from circuitwise.models import cost

    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(f"cuda {device}"))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append("mps"))
    for dev in ("cuda:1", "mps", "cpu"):
        cost._sync(torch.device(dev))
    assert calls == ["cuda cuda:1", "mps"]


# -- the engines on the accelerator ----------------------------------------------------------------


def _roles_task(model):
    """Prompts of two lengths with roles (positions aligned by role, and key/query flows)."""
    examples = []
    for i, n_fill in enumerate((1, 2, 1, 2)):
        a, b = "ABCD"[i % 4], "ABCD"[(i + 1) % 4]
        clean = f" When {a}{' and then' * n_fill} met {b}, {b} gave"
        corrupted = f" When {b}{' and then' * n_fill} met {b}, {b} gave"
        roles = {"S1": clean.index(f" {a}") + 1, "S2": clean.index(f" met {b}") + 5, "END": clean.rindex(" gave") + 1}
        examples.append(cw.Example(clean=clean, correct=f" {a}", incorrect=f" {b}", corrupted=corrupted, roles=roles))
    return cw.tokenize_task(model, cw.Task("roles", tuple(examples)), need_corrupted=True)[0]


def _every_edge_terms(model, tok):
    from circuitwise.circuits.gradients import every_edge_scores

    with every_edge_scores(graph_of(model)) as track:
        scores = score_edges(model, tok, "eap-ig", options={"steps": 2}).scores
    return [scores, track.values(len(tok))]


def _stages(model, tok, rtok):
    """Every engine's entry point, each returning the tensors to compare with a plain CPU run."""
    L = model.cfg.n_layers
    masks = torch.rand(2, graph_of(model).n_edges, generator=torch.Generator().manual_seed(0)) < 0.3
    return {
        "baseline": lambda: [cw.baseline(model, tok).logit_diff],
        "dla": lambda: [cw.direct_logit_attribution(model, tok).heads.per_example],
        "patching heads (cone)": lambda: [cw.activation_patching(model, tok, "heads", normalize=False).raw],
        "patching heads (hooks)": lambda: [cw.activation_patching(model, tok, "heads", normalize=False,
                                                                  engine="hooks").raw],
        "patching resid_pre by role": lambda: [cw.activation_patching(model, rtok, "resid_pre", normalize=False,
                                                                      align="role").raw],
        "patching head_pattern": lambda: [cw.activation_patching(model, tok, "head_pattern", normalize=False).raw],
        "attribution heads_by_pos": lambda: [cw.attribution_patching(model, rtok, "heads_by_pos", normalize=False,
                                                                     align="end").raw],
        "eap-ig kl": lambda: [score_edges(model, tok, "eap-ig", options={"steps": 2}, metric="kl").scores],
        "eap-ig-activations": lambda: [score_edges(model, tok, "eap-ig-activations", options={"steps": 2}).scores],
        "eap by role, key-query": lambda: [score_edges(model, rtok, "eap", options={
            "positions": "roles", "kv_positions": "key-query"}).by_position],
        "exact": lambda: [score_edges(model, tok, "exact").scores],
        "relp": lambda: [score_edges(model, tok, "relp").scores],
        "edge-pruning": lambda: [score_edges(model, tok, "edge-pruning", options={"steps": 3}).scores],
        "neurons": lambda: [score_neurons(model, tok).scores],
        "every edge per prompt (edge stability's terms)": lambda: _every_edge_terms(model, tok),
        "faithfulness (mean ablation)": lambda: [f.per_example for f in
                                                 faithfulness_of_masks(model, tok, masks, ablation="mean")],
        "circuit and its evaluation": lambda: [torch.tensor(cw.evaluate_circuit(
            model, tok, cw.find_circuit(model, tok, steps=2).circuit, random_samples=2,
            mib=False).faithfulness.faithfulness)],
        "mechanism": lambda: [torch.tensor([h.ov_answer.z for h in mechanism_readouts(
            model, tok, [(0, 0), (L - 1, 1)]).heads])],
    }


def _run_all(model, mps: bool = False) -> tuple[dict[str, list[torch.Tensor]], dict[str, str]]:
    with virtual_device(mps=mps) as vd:
        tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
        rtok = _roles_task(model)
        got, failed = {}, {}
        for name, stage in _stages(model, tok, rtok).items():
            n = len(vd.errors)
            try:
                got[name] = [t.detach().cpu() for t in stage()]
            except DeviceMixError as e:
                failed[name] = str(e)
            if len(vd.errors) > n:  # also what the engine caught and went on from
                failed[name] = vd.errors[n]
    return got, failed


@pytest.fixture(scope="module")
def reference():
    """Each stage on the bundled model, plain CPU."""
    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
    stages = _stages(model, tok, _roles_task(model))
    return {name: [t.detach().cpu() for t in stage()] for name, stage in stages.items()}


def _same(got: dict[str, list[torch.Tensor]], reference: dict[str, list[torch.Tensor]], atol: float = 0.0) -> None:
    assert set(got) == set(reference)
    for name, ts in got.items():
        for a, b in zip(ts, reference[name], strict=True):
            assert torch.allclose(a.double(), b.double(), atol=atol, rtol=0, equal_nan=True), name


@pytest.mark.parametrize("mps", [False, True], ids=["cuda-rules", "mps-rules"])
def test_every_engine_runs_on_the_accelerator_with_the_cpus_numbers(reference, mps):
    model = model_on_accelerator(cw.load_model("bundled", device=str(ACCELERATOR)))
    assert model.cfg.device in (ACCELERATOR, str(ACCELERATOR))
    got, failed = _run_all(model, mps=mps)
    assert failed == {}
    # Float32 on the accelerator is float32 on the CPU (MPS's float32 read-outs differ by rounding).
    _same(got, reference, atol=1e-5 if mps else 0.0)


def test_every_engine_runs_on_a_model_split_with_the_host(reference):
    """The second half of the blocks on the host: every engine moves what it carries between them
    (mechanism's embedding-only values went through a later block's norm on the embedding's device)."""
    model = split_to_host(model_on_accelerator(cw.load_model("bundled", device=str(ACCELERATOR))))
    got, failed = _run_all(model)
    assert failed == {}
    _same(got, reference, atol=1e-5)  # the split's hooks copy, and the engines sum, in another order


def test_transcoder_training_and_its_card_run_on_a_split_model():
    """Capturing the MLPs' inputs and replacing their outputs read layers on both devices."""
    from circuitwise.features.train import TrainOptions, replaced_logits, train_transcoders

    model = split_to_host(model_on_accelerator(cw.load_model("bundled", device=str(ACCELERATOR))))
    opts = TrainOptions(width=16, k=4, tokens=256, batch_tokens=64, seq_len=16, heldout_tokens=32,
                        checkpoint_every=1000, dead_tokens=64)
    with virtual_device() as vd:
        ts = train_transcoders(model, ["A tortoise is old, but a kitten is young."] * 24, opts)
        ids = torch.tensor([model.tokenizer.encode(" A tortoise is old")[:4]], device=model.cfg.device)
        logits = replaced_logits(model, ts, ids)
    assert vd.errors == [] and where(logits) and logits.shape[:2] == (1, 4)


@pytest.mark.parametrize("family", ["llama", "gemma2", "opt"])
def test_rotary_soft_capped_and_hook_engine_families_run_on_the_accelerator(family, family_path_for):
    """Rotary tables and grouped keys (llama), soft-caps and post-norms (gemma2), and a family the
    fast engines leave to the hook engine (opt), under MPS's rules (which include CUDA's)."""
    model = model_on_accelerator(cw.load_model(str(family_path_for(family)), device=str(ACCELERATOR)))
    with virtual_device(mps=True) as vd:
        tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
        stages = _stages(model, tok, _roles_task(model))
        for name in ("baseline", "dla", "patching heads (cone)", "attribution heads_by_pos", "eap-ig kl", "exact",
                     "faithfulness (mean ablation)", "mechanism"):
            stages[name]()
    assert vd.errors == []


def test_a_whole_run_on_a_split_model_under_mps_rules(tmp_path):
    """`circuitwise run` end to end (plan, baseline intervals, sweeps, circuit, curve, report)."""
    from circuitwise.config import RunConfig

    model = split_to_host(model_on_accelerator(cw.load_model("bundled", device=str(ACCELERATOR))))
    with virtual_device(mps=True) as vd:
        res = cw.run(RunConfig.build(task="opposites", n=8, out=tmp_path / "run",
                                     patching=("heads", "resid_pre", "heads_by_pos")), model=model).results
    assert vd.errors == [] and res.circuit is not None
