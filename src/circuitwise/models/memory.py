"""Memory planned, not discovered: each stage's peak from the model's shapes, the prompts and the batch.

The estimates are upper bounds built from the tensors a stage holds at its peak, per example of
``T`` (padded) tokens, in elements of the compute dtype; float32 accumulators count double in
half precision. Each stage's coefficients were measured (peak RSS less the model's, on GPT-2,
Llama and Pythia shapes; ``bench/scale.py`` checks them on real shapes) and rounded up, so a
batch chosen to fit ``--max-memory`` does fit. ``Shapes.from_config`` reads a checkpoint's
``config.json`` so that a model too large for the budget is refused before it is loaded.

The budget (``--max-memory``) defaults to what is free: the device's free memory on a GPU,
``MemAvailable`` on a CPU, less a margin for everything else the process holds.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from circuitwise.errors import MemoryBudgetError
from circuitwise.models import parallel
from circuitwise.sizes import human

Stage = Literal["baseline", "dla", "patching", "attribution", "edges", "evaluation"]
STAGES: tuple[Stage, ...] = ("baseline", "dla", "patching", "attribution", "edges", "evaluation")

# Share of the free memory a plan may use: the rest is the interpreter, libraries, fragmentation.
FREE_SHARE = 0.85
GiB = 1 << 30


@dataclass(frozen=True)
class Shapes:
    """What memory depends on: the model's sizes and the compute dtype's width in bytes."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    gated: bool
    n_params: int
    dtype_bytes: int
    stored_bytes: int = 0  # bytes per weight in the checkpoint (0: not known, as dtype_bytes)

    @property
    def weight_bytes(self) -> int:
        return self.n_params * self.dtype_bytes

    @property
    def load_bytes(self) -> int:
        """The weights as loading first holds them: a float32 checkpoint loaded into bfloat16 is
        read in float32 (measured at Llama-3.2-1B shapes: a 20.7 GB peak for 2.5 GB of bf16 weights)."""
        return self.n_params * max(self.dtype_bytes, self.stored_bytes)

    @property
    def n_senders(self) -> int:
        """Edge-graph senders: the input, every head and every MLP."""
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def mlp_width(self) -> int:
        return self.d_mlp * (2 if self.gated else 1)

    @classmethod
    def from_model(cls, model: Any) -> "Shapes":
        cfg = model.cfg
        dtype = model.W_E.dtype
        n_kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
        return cls(
            n_layers=int(cfg.n_layers), d_model=int(cfg.d_model), n_heads=int(cfg.n_heads), n_kv_heads=int(n_kv),
            d_head=int(cfg.d_head), d_mlp=int(getattr(cfg, "d_mlp", None) or 4 * cfg.d_model),
            d_vocab=int(cfg.d_vocab), gated=bool(getattr(cfg, "gated_mlp", False)),
            n_params=sum(p.numel() for p in model.parameters()), dtype_bytes=dtype.itemsize,
        )

    @classmethod
    def from_config(cls, folder: str | Path, dtype: torch.dtype, *, processing: bool = True) -> "Shapes | None":
        """Shapes of a local Hugging Face checkpoint before loading it (None where its config is not read).

        ``processing``: whether the weights will be processed, which unties a tied unembedding."""
        try:
            from transformers import AutoConfig

            hf = AutoConfig.from_pretrained(str(folder))
        except Exception:  # the load itself will say what is wrong with the folder
            return None
        text = getattr(hf, "text_config", None) or hf
        get = lambda *names, default=None: next(  # noqa: E731
            (getattr(text, n) for n in names if getattr(text, n, None) is not None), default)
        d = get("hidden_size", "n_embd", "d_model")
        L = get("num_hidden_layers", "n_layer", "num_layers")
        H = get("num_attention_heads", "n_head", "num_heads")
        V = get("vocab_size")
        if not all(isinstance(v, int) for v in (d, L, H, V)):
            return None
        m = get("intermediate_size", "n_inner", "ffn_dim", "d_mlp") or 4 * d
        n_kv = get("num_key_value_heads", default=H) or H
        dh = get("head_dim", default=d // H) or d // H
        gated = get("model_type", default="") not in _PLAIN_MLP
        per_layer = d * dh * (2 * H + 2 * n_kv) + d * m * (3 if gated else 2) + 4 * d
        # Processed, the unembedding is a matrix of its own, tied in the checkpoint or not; unprocessed, a
        # tied one stays the embedding (measured on the 15 family fixtures: within 1% of the loaded count).
        tied = bool(getattr(hf, "tie_word_embeddings", getattr(text, "tie_word_embeddings", False)))
        n_params = L * per_layer + (1 if tied and not processing else 2) * V * d + 2 * d
        stored = getattr(hf, "dtype", None) or getattr(hf, "torch_dtype", None)
        if isinstance(stored, str):
            stored = getattr(torch, stored, None)
        # Unknown: as a checkpoint saved without a dtype is, in float32.
        stored_bytes = stored.itemsize if isinstance(stored, torch.dtype) else 4
        return cls(L, d, H, n_kv, dh, m, V, gated, n_params, dtype.itemsize, stored_bytes)


# Families whose MLP is one matrix in, one out; the others (Llama and its kin) are gated.
_PLAIN_MLP = frozenset({"gpt2", "gpt_neox", "gptj", "opt", "gpt_neo", "phi", "bloom", "falcon", "gpt_bigcode",
                        "starcoder2", "mpt", "stablelm"})


# Per-example elements, by stage. T: padded prompt length. Each term names what it holds.
def _forward(s: Shapes, T: int) -> float:
    # The bridge's forward: full logits (and their softmax/copies), one layer's transients
    # (q/k/v, the attention scores and pattern in float32, the MLP's hidden), the residual stream.
    qkv = (s.n_heads + 2 * s.n_kv_heads) * s.d_head
    # The logits are held several times over (the model's, the bridge's hook output, float copies):
    # 5 logit-sized tensors per example measured at GPT-2-small shapes.
    return T * (8 * s.d_vocab + 4 * s.mlp_width + 16 * s.d_model + 3 * qkv + 6 * s.n_heads * T)


def _cache(s: Shapes, T: int) -> float:
    # run_with_cache over every layer: residual points, attention/MLP outputs, hook_z, norm scales.
    return s.n_layers * T * (6 * s.d_model + 2 * s.n_heads * s.d_head + 2 * s.n_heads * T)


def per_example(stage: Stage, s: Shapes, T: int) -> float:
    """Peak bytes one more example adds to ``stage`` (upper bound)."""
    # In half precision the float32 pieces (softmax, norm statistics, accumulators) weigh double.
    return _per_example(stage, s, T) * (1.5 if s.dtype_bytes < 4 else 1.0)


def _per_example(stage: Stage, s: Shapes, T: int) -> float:
    a = s.dtype_bytes
    if stage == "baseline":
        return a * _forward(s, T)
    if stage == "dla":
        return a * (_forward(s, T) + 2 * _cache(s, T))
    if stage == "patching":
        # The clean and corrupted caches each variant reads (the cone's stacked rows are a fixed block).
        return a * (_forward(s, T) + 3 * _cache(s, T))
    if stage == "attribution":
        # A forward with every activation kept for the backward, twice (clean, corrupted), and gradients.
        saved = s.n_layers * T * (24 * s.d_model + 6 * s.mlp_width + 8 * (s.n_heads + 2 * s.n_kv_heads) * s.d_head
                                  + 8 * s.n_heads * T)
        return a * (_forward(s, T) + saved / 2)
    if stage == "edges":
        # Sender outputs of the clean and corrupted runs, their difference (and its copy by example when
        # every edge is scored per prompt), and one graph forward kept for the backward: every
        # receiver's input (q/k/v per query head, the MLP) per layer.
        senders = 4 * s.n_senders * T * s.d_model
        graph = s.n_layers * T * (2 * (3 * s.n_heads + 1) * s.d_model + 6 * s.mlp_width + 8 * s.n_heads * T)
        return a * (senders + graph + 4 * T * s.d_model)
    # evaluation: sender outputs of the replacement and base runs, one patched variant's per worker
    # (models.parallel; a stack's further variants are the fixed block), the base run's residuals.
    copies = 2 + max(1, parallel.WORKERS)
    return a * (copies * s.n_senders * T * s.d_model + s.n_layers * T * s.d_model + _forward(s, T) / 2)


# The interpreter's and torch's own allocations (libraries, thread pools, kernels' workspaces) on a
# CPU, measured at 100–150 MB beside a toy model: counted once.
RUNTIME_BYTES = 200e6


# The engines' stack sizes live here, beside what they cost. The cone engine stacks patched
# variants up to MAX_ROWS residual rows per call (patching.cone); a patched edge-graph forward
# stacks variants up to STACK_BYTES of sender activations: a stack that stays near the CPU caches
# runs ~2x faster than one of hundreds of MB (bench/evaluation.py), and large models, whose
# forwards are FLOP-bound, simply stack one variant at a time (circuits.patch).
MAX_ROWS = 4096
STACK_BYTES = 16e6
# The patched metrics a model's edge-set runs already measured, per task (circuits.patch), kept so
# that growing a circuit, its curve and its baselines never run one edge set twice: within
# RUNTIME_BYTES (a float32 per example and edge set).
MEMO_BYTES = 32e6
# Every edge's per-prompt scores, kept by the discovery pass for edge stability (circuits.gradients
# every_edge_scores) when ``[edge, prompt]`` float32 terms, twice (kept, and the batches' buffers in
# flight), fit in this many bytes (GPT-2 small's 32,491 edges: about 1,000 prompts); beyond it,
# stability scores its blocks of prompts again.
EVERY_EDGE_BYTES = 256e6


def fixed(stage: Stage, s: Shapes, T: int) -> float:
    """Bytes a stage holds whatever the batch: the engines' copy of the processed weights (read once
    per model, cached), the cone's stacked rows, the evaluations' stacks, float32 read-outs."""
    a = s.dtype_bytes
    if stage == "dla":
        return 4.0 * s.d_model * s.d_vocab  # the unembedding read out in float32
    if stage == "patching":  # models.weights.read_weights (stacked q|k|v), and the cone's rows
        rows = MAX_ROWS * max(1, parallel.WORKERS)  # a block of rows in flight per worker (models.parallel)
        return s.weight_bytes + a * rows * (12 * s.d_model + 4 * s.mlp_width + 4 * s.n_heads * T)
    if stage == "edges":  # read_weights, the graph's per-query-head q/k/v layout, the float32 scores
        return 2 * s.weight_bytes + 4.0 * s.n_senders * (3 * s.n_heads + 2) * s.n_layers
    if stage == "evaluation":  # the same two copies, and the stacked variants with their transients
        return 2 * s.weight_bytes + 4 * STACK_BYTES * max(1, parallel.WORKERS)
    return 0.0


# What a loaded model holds, in units of its processed weights (compatibility mode unties the
# unembedding, so those count the embedding twice): on a CPU the bridge keeps the checkpoint's
# weights beside the processed ones (RSS after loading: 1.7× at GPT-2-small shapes, 2.1× at
# Qwen2.5-0.5B's); on a GPU the processed weights, with room for processing's temporaries (not yet
# measured on a GPU: bench/device_check.py records it).
LOAD_FACTOR = {"cpu": 2.25, "cuda": 1.25, "mps": 1.25}
# Loading itself peaks higher: 3.2× at GPT-2-small shapes, 4.2× at Qwen2.5-0.5B's on a CPU.
LOAD_PEAK_FACTOR = {"cpu": 4.5, "cuda": 2.5, "mps": 2.5}


def resident(s: Shapes, device: str | torch.device = "cpu") -> float:
    """Bytes the loaded model and the runtime hold before any stage runs."""
    kind = torch.device(device).type
    return LOAD_FACTOR.get(kind, 2.25) * s.weight_bytes + (RUNTIME_BYTES if kind == "cpu" else 0.0)


def load_peak(s: Shapes, device: str | torch.device = "cpu") -> int:
    """Peak bytes while loading and processing the model."""
    kind = torch.device(device).type
    return int(LOAD_PEAK_FACTOR.get(kind, 4.5) * s.load_bytes + (RUNTIME_BYTES if kind == "cpu" else 0.0))


def estimate(stage: Stage, s: Shapes, T: int, batch: int, device: str | torch.device = "cpu") -> int:
    """Peak bytes of ``stage`` at ``batch`` examples of ``T`` tokens: the loaded model included."""
    return int(resident(s, device) + fixed(stage, s, T) + batch * per_example(stage, s, T))


def fit_batch(stage: Stage, s: Shapes, T: int, budget: int, prefer: int, device: str | torch.device = "cpu") -> int:
    """The largest batch ≤ ``prefer`` that fits ``budget`` bytes (0: not even one example fits)."""
    room = budget - resident(s, device) - fixed(stage, s, T)
    if room <= 0:
        return 0
    return int(max(0, min(prefer, room // max(per_example(stage, s, T), 1.0))))


# ---- how much there is -----------------------------------------------------------------------

def available_bytes(device: str | torch.device = "cpu") -> int:
    """Free memory on ``device`` now: the GPU's free memory, else the system's ``MemAvailable``."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    if dev.type == "mps":
        try:
            return int(torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory())
        except Exception:  # older torch: fall back to the system's memory (MPS shares it)
            pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * GiB  # unknown: assume a modest laptop


def default_budget(device: str | torch.device = "cpu", *, loaded: int = 0) -> int:
    """The budget when ``--max-memory`` is not given: a share of what is free, plus what the model already holds."""
    return int(FREE_SHARE * available_bytes(device)) + loaded


# ---- a model's budget -------------------------------------------------------------------------

def budget_of(model: Any) -> int:
    """The bytes a model's stages may use: ``--max-memory`` where given (``load_model(max_memory=…)``),
    else a share of the device's free memory now plus what the loaded model already holds."""
    explicit = getattr(model, "circuitwise_max_memory", None)
    if explicit:
        return int(explicit)
    s = Shapes.from_model(model)
    device = model.W_E.device
    return default_budget(device, loaded=int(resident(s, device)))


def batch_for(stage: Stage, model: Any, T: int, prefer: int) -> int:
    """``prefer`` examples per batch, or fewer where ``stage`` would not fit the model's budget (at least 1)."""
    s = Shapes.from_model(model)
    return max(1, fit_batch(stage, s, T, budget_of(model), prefer, model.W_E.device))


def refuse_unless_fits(stages: tuple[Stage, ...] | list[Stage], model: Any, T: int, *, what: str = "",
                       skips: dict[Stage, str] | None = None) -> None:
    """Raise MemoryBudgetError, naming the fixes, when one example of ``T`` tokens does not fit a stage;
    ``skips``: how the command in hand leaves a stage out (``run``: ``--patch none`` …), named first."""
    s, budget, device = Shapes.from_model(model), budget_of(model), model.W_E.device
    for stage in stages:
        need = estimate(stage, s, T, 1, device)
        if need > budget:
            skip = (skips or {}).get(stage)
            raise MemoryBudgetError(
                f"{what or 'This command'} does not fit in {human(budget)}: its {stage} stage needs about "
                f"{human(need)} for one prompt of {T} tokens (the model holds {human(resident(s, device))}). "
                + fixes(s, skip))


def fixes(s: Shapes, skip: str | None = None, *, prompts: bool = True) -> str:
    """What a user can do about a plan that does not fit (``skip``: leaving the stage out, where one can;
    ``prompts``: whether shorter prompts would help, not where even a one-token prompt does not fit)."""
    # Half precision halves the weights and activations, not the runtime's own share (RUNTIME_BYTES).
    half = " --dtype bfloat16 (halves the weights and activations)," if s.dtype_bytes > 2 else ""
    first = f" {skip}," if skip else ""
    shorter = " shorter prompts," if prompts else ""
    if not torch.cuda.is_available():  # none here: the GPU fixes are another machine's
        return (f"Fixes:{first}{half}{shorter} a larger --max-memory if more is free, or a machine with a GPU "
                "(--device cuda there; the model split over several GPUs with --device-map auto).")
    return (f"Fixes:{first}{half}{shorter} a larger --max-memory if more is free, the model split "
            "over several GPUs (--device-map auto), or a device with more memory (--device cuda).")


# ---- measuring (bench/ and tests) ----------------------------------------------------------

def _rss_status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Return freed heap to the system and restart the peak-RSS count; the RSS now (CPU, Linux only)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM (peak RSS) to the current RSS
    return _rss_status("VmRSS")


def peak_rss() -> int:
    """Peak RSS since the last :func:`reset_peak` (Linux)."""
    return _rss_status("VmHWM")


__all__ = ["EVERY_EDGE_BYTES", "FREE_SHARE", "LOAD_FACTOR", "LOAD_PEAK_FACTOR", "MAX_ROWS", "MEMO_BYTES", "RUNTIME_BYTES", "STACK_BYTES", "STAGES", "Shapes",
           "Stage", "available_bytes", "batch_for", "budget_of", "default_budget", "estimate", "fit_batch", "fixed",
           "fixes", "load_peak", "peak_rss", "per_example", "refuse_unless_fits", "reset_peak", "resident"]
