"""A bridge's processed weights, read once, described as a few explicit architecture features.

Both fast engines — the causal cone (exact patching) and the edge-graph forward (EAP, EAP-IG,
exact edges, faithfulness) — run a model from these weights with :mod:`circuitwise.models.kernels`.
Each feature is one small field that a kernel reads:

- norms: LayerNorm or RMSNorm, with or without learned weights (Gemma's ``1 + w`` is resolved
  here), before a sublayer (``ln1``/``ln2``), after it (``post_attn``/``post_mlp``: Gemma 2/3,
  OLMo 2), or both; a final norm;
- positions: learned absolute (in the embedding), or rotary over all or the first ``rot_dim``
  dimensions of each head, rotate-half (NeoX/Llama) or adjacent pairs (GPT-J); the cos/sin tables
  are the model's own (read from its rotary hooks), so every RoPE scaling variant is exact;
- attention: grouped key/value heads, query/key norms per head or over all heads, the score
  scale, a score soft-cap, a sliding window per layer;
- MLP: plain or gated (SwiGLU, GeGLU), any activation of :data:`ACTIVATIONS`; sequential or
  parallel attention + MLP (sharing one norm or with their own);
- the unembedding with a logit soft-cap.

:func:`supports` says, before any work, whether the engines implement a model, and why not; the
engines still compare their unpatched output with the bridge's own forward before they trust it.
"""

from __future__ import annotations

import math
import operator
import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F

from circuitwise.models import relevance
from circuitwise.models.activations import ACTIVATIONS
from circuitwise.models.placement import move, move_opt
from circuitwise.models.precision import HALF

NormKind = Literal["LN", "RMS"]
RotaryStyle = Literal["half", "pairs"]

# Attention bridges whose computation (projections, rotary, mask, soft-cap, softmax) the kernels
# reproduce. GPT-J's ``AttentionBridge`` runs Hugging Face's own module, whose rotary we rebuild.
_ATTENTION = {"AttentionBridge", "JointQKVAttentionBridge", "PositionEmbeddingsAttentionBridge",
              "JointQKVPositionEmbeddingsAttentionBridge"}
_MLPS = {"MLPBridge", "GatedMLPBridge", "JointGateUpMLPBridge"}
_NORMS = {"NormalizationBridge", "RMSNormalizationBridge", "LayerNormPreBridge"}


@dataclass(frozen=True, eq=False)
class Norm:
    """``(x − mean) / rms · w + b`` (LayerNorm) or ``x / rms · w`` (RMSNorm); ``w``/``b`` optional."""

    kind: NormKind
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in HALF:
            # Statistics over d_model are a long sum: taken in float32, the output rounded once.
            w = None if self.weight is None else self.weight.float()
            b = None if self.bias is None else self.bias.float()
            return Norm(self.kind, w, b, self.eps)(x.float()).to(x.dtype)
        if relevance.norm_rule():
            # LRP's LN-rule (relevance patching): the divisor is a constant; the same values.
            xc = x - x.mean(-1, keepdim=True) if self.kind == "LN" else x
            y = xc / (xc.pow(2).mean(-1, keepdim=True) + self.eps).sqrt().detach()
            y = y if self.weight is None else y * self.weight
            return y if self.bias is None else y + self.bias
        if self.kind == "LN":
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return y if self.weight is None else y * self.weight

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The per-row divisor (TransformerLens's ``hook_scale``), ``[..., 1]``."""
        if x.dtype in HALF:
            return self.scale(x.float()).to(x.dtype)
        if self.kind == "LN":
            x = x - x.mean(-1, keepdim=True)
        return (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()

    def backward(self, x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """∂⟨dy, norm(x)⟩/∂x for every leading slice of ``dy`` (``x`` broadcast), in place on ``dy``."""
        if dy.dtype in HALF:  # the sums over d_model in float32, as in the forward
            return dy.copy_(self.backward(x.float(), dy.float()))
        g = dy if self.weight is None else dy.mul_(self.weight)
        if relevance.norm_rule():  # the LN-rule's backward: the divisor held constant
            if self.kind == "LN":
                x = x - x.mean(-1, keepdim=True)
                g.sub_(g.mean(-1, keepdim=True))
            return g.mul_(torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))
        if self.kind == "LN":
            x = x - x.mean(-1, keepdim=True)
            g.sub_(g.mean(-1, keepdim=True))
        inv = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        y = x * inv
        gy = (g * y).sum(-1, keepdim=True).div_(x.shape[-1])
        return g.addcmul_(y, gy, value=-1.0).mul_(inv)


@dataclass(frozen=True, eq=False)
class Layer:
    """One block's weights. Projections are ``[d_model, n·d_head]`` so ``x @ w`` is one GEMM."""

    ln1: Norm | None  # None: attention reads the raw residual (OLMo 2)
    ln2: Norm | None  # None with ``mlp_reads_ln1``: the MLP shares ln1's output (GPT-J, Phi)
    post_attn: Norm | None
    post_mlp: Norm | None
    parallel: bool
    mlp_reads_ln1: bool
    w_q: torch.Tensor
    b_q: torch.Tensor | None
    w_k: torch.Tensor
    b_k: torch.Tensor | None
    w_v: torch.Tensor
    b_v: torch.Tensor | None
    w_o: torch.Tensor  # [n_heads·d_head, d_model]
    b_o: torch.Tensor | None
    q_norm: Norm | None
    k_norm: Norm | None
    qk_norm_per_head: bool  # over d_head (Qwen 3, Gemma 3) or over all heads (OLMo 2)
    scale: float
    softcap: float | None
    window: int | None  # a query sees the last ``window`` positions, itself included
    w_in: torch.Tensor
    b_in: torch.Tensor | None
    w_gate: torch.Tensor | None
    b_gate: torch.Tensor | None
    w_out: torch.Tensor
    b_out: torch.Tensor | None
    # q|k|v and k|v side by side: one GEMM where every row needs them (the cone's hot loop).
    w_qkv: torch.Tensor = field(init=False, repr=False)
    b_qkv: torch.Tensor | None = field(init=False, repr=False)
    w_kv: torch.Tensor = field(init=False, repr=False)
    b_kv: torch.Tensor | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        def bias(*pairs: tuple[torch.Tensor | None, torch.Tensor]) -> torch.Tensor | None:
            if all(b is None for b, _ in pairs):
                return None
            return torch.cat([torch.zeros(w.shape[1], dtype=w.dtype, device=w.device) if b is None else b
                              for b, w in pairs])

        set_ = object.__setattr__
        set_(self, "w_qkv", torch.cat([self.w_q, self.w_k, self.w_v], 1).contiguous())
        set_(self, "b_qkv", bias((self.b_q, self.w_q), (self.b_k, self.w_k), (self.b_v, self.w_v)))
        set_(self, "w_kv", torch.cat([self.w_k, self.w_v], 1).contiguous())
        set_(self, "b_kv", bias((self.b_k, self.w_k), (self.b_v, self.w_v)))


@dataclass(eq=False)
class Weights:
    """A model's processed weights for the fast engines (see the module docstring)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    layers: tuple[Layer, ...]
    ln_final: Norm | None
    W_U: torch.Tensor  # [d_model, vocab]
    b_U: torch.Tensor | None
    logit_softcap: float | None
    act: Callable[[torch.Tensor], torch.Tensor]
    rot_dim: int  # 0: no rotary
    rot_style: RotaryStyle
    features: dict[str, Any]
    dtype: torch.dtype
    device: torch.device  # the embedding's: where inputs start
    # A weak reference: the caches keyed weakly by the model hold these, so a strong one would keep
    # every model ever read (and its GPU memory) alive.
    _model_ref: Any = field(repr=False, default=None)
    _rotary: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict, repr=False)
    # Per block, the device its weights are on; the final norm's and unembedding's (models.placement).
    # Empty / None: everything on ``device``.
    devices: tuple[torch.device, ...] = ()
    out_device: torch.device | None = None

    def device_of(self, l: int) -> torch.device:
        """The device block ``l`` runs on."""
        return self.devices[l] if self.devices else self.device

    @property
    def unembed_device(self) -> torch.device:
        """The device of the final norm and the unembedding."""
        return self.device if self.out_device is None else self.out_device

    @property
    def split(self) -> bool:
        """Whether the blocks (or the unembedding) are not all on the embedding's device."""
        return any(d != self.device for d in (*self.devices, self.unembed_device))

    @property
    def model(self) -> Any:
        """The bridge these weights were read from (it must still be alive)."""
        model = self._model_ref() if self._model_ref is not None else None
        if model is None:
            raise RuntimeError("the model these weights were read from has been freed")
        return model

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.n_heads // self.n_kv_heads

    def rotary(self, T: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer ``(cos, sin)`` ``[T, rot_dim]`` for positions 0…T−1 (cached per length)."""
        if T not in self._rotary:
            # Cached tensors outlive the caller's mode: never inference tensors (autograd reads them).
            with torch.inference_mode(False), torch.no_grad():
                self._rotary[T] = _rotary_tables(self, T)
        return self._rotary[T]


def supports(model: Any) -> str | None:
    """Why the fast engines cannot run ``model``, or None when they can (before any work)."""
    try:
        _check(model)
    except _Unsupported as e:
        return str(e)
    return None


class _Unsupported(Exception):
    pass


def _check(model: Any) -> None:
    params = getattr(model, "parameters", None)  # stand-ins that only carry a cfg have none
    n_meta = sum(p.device.type == "meta" for p in params()) if callable(params) else 0
    if n_meta:
        # A split model's blocks are followed (models.placement), but offloaded weights have no
        # values until accelerate's hooks load them inside the bridge's own forward.
        raise _Unsupported(f"{n_meta} parameter tensors are offloaded to the CPU or disk (on meta, loaded only "
                           "inside the bridge's forward) and the fast engines read weights directly; split the "
                           "model over enough GPUs that nothing is offloaded")
    cfg = model.cfg
    flags = [
        ("attn_only", "the model is attention-only"),
        ("use_split_qkv_input", "split q/k/v inputs are on"),
        ("use_attn_in", "per-head attention inputs are on"),
        ("rotary_adjacent_pairs", "rotary over adjacent pairs with relaid cos/sin (GLM/ERNIE)"),
        ("rotary_interleaved_cos_sin", "interleaved rotary cos/sin (Cohere)"),
        ("gated_q_proj", "gated query projection"),
    ]
    for name, why in flags:
        if getattr(cfg, name, False):
            raise _Unsupported(why)
    if getattr(cfg, "attention_dir", "causal") != "causal":
        raise _Unsupported("attention is not causal")
    if getattr(cfg, "positional_embedding_type", "standard") not in ("standard", "rotary"):
        raise _Unsupported(f"positional embedding {cfg.positional_embedding_type!r}")
    if getattr(cfg, "act_fn", None) not in ACTIVATIONS:
        raise _Unsupported(f"activation {getattr(cfg, 'act_fn', None)!r}")
    if getattr(cfg, "num_experts", None):
        raise _Unsupported("a mixture-of-experts MLP")
    for l, block in enumerate(model.blocks):
        attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
        if attn is None or type(attn).__name__ not in _ATTENTION:
            raise _Unsupported(f"block {l}'s attention is {type(attn).__name__}")
        if mlp is None or type(mlp).__name__ not in _MLPS:
            raise _Unsupported(f"block {l}'s MLP is {type(mlp).__name__}")
        hf = attn.original_component
        for extra in ("sinks", "key_multiplier"):
            if getattr(hf, extra, None) is not None:
                raise _Unsupported(f"attention {extra}")
        if getattr(getattr(hf, "config", None), "clip_qkv", None) is not None:
            raise _Unsupported("clipped q/k/v")
        for name in ("ln1", "ln2", "ln1_post", "ln2_post"):
            n = getattr(block, name, None)
            if n is not None and type(n).__name__ not in _NORMS:
                raise _Unsupported(f"block {l}'s {name} is {type(n).__name__}")
        if type(attn).__name__ == "AttentionBridge" and cfg.positional_embedding_type == "rotary" \
                and _gptj_rotary(model) is None:
            raise _Unsupported("rotary attention computed inside an unknown Hugging Face module")
    for n in ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U", "W_E"):
        if not hasattr(type(model), n) and not hasattr(model, n):
            raise _Unsupported(f"the bridge does not expose {n}")


# Reading (stacking) a bridge's weights costs about a forward: one read per model and dtype,
# redone when any parameter is replaced or changed in place (tensor version counters).
_CACHE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _ref(model: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(model)
    except TypeError:  # not weak-referenceable: no cache holds it either
        return lambda: model


def _fingerprint(model: Any) -> tuple[int, ...]:
    return tuple(v for p in model.parameters() for v in (id(p), p._version))


def read_weights(model: Any, dtype: torch.dtype | None = None) -> Weights:
    """The model's weights for the fast engines (cached). Raises ValueError if :func:`supports` fails."""
    why = supports(model)
    if why is not None:
        raise ValueError(why)
    key = (_fingerprint(model), dtype)
    try:
        hit = _CACHE.get(model, {}).get(key)
    except TypeError:  # not weak-referenceable: no caching
        with torch.inference_mode(False), torch.no_grad():
            return _read(model, dtype)
    if hit is None:
        with torch.inference_mode(False), torch.no_grad():  # see Weights.rotary
            hit = _read(model, dtype)
        _CACHE.setdefault(model, {}).clear()
        _CACHE[model][key] = hit
    return hit


def _opt(get: Callable[[], Any]) -> Any:
    """A bridge weight that the checkpoint may lack (bias-free projections raise)."""
    try:
        return get()
    except (AttributeError, KeyError, TypeError):
        return None


def _norm(mod: Any, cfg: Any, dt: torch.dtype) -> Norm | None:
    if mod is None:
        return None
    orig = getattr(mod, "original_component", None)
    rms = bool(getattr(mod, "uses_rms_norm", type(mod).__name__.startswith("RMS")))
    w = getattr(mod, "weight", None)
    if w is None and orig is not None:
        w = getattr(orig, "weight", None)
    if w is not None and getattr(mod, "uses_weight_offset", False):
        w = 1.0 + w
    b = None if rms or orig is None else getattr(orig, "bias", None)
    eps = getattr(orig, "eps", None) or getattr(orig, "variance_epsilon", None) or getattr(cfg, "eps", 1e-5)
    # Folded norms have weight 1 and bias 0: drop them (the same numbers, less work).
    w = None if w is None or bool((w == 1).all()) else w.detach().to(dt)
    b = None if b is None or not bool(b.any()) else b.detach().to(dt)
    return Norm("RMS" if rms else "LN", w, b, float(eps))


def _gptj_rotary(model: Any) -> torch.Tensor | None:
    """GPT-J's sin|cos table (``embed_positions``): its attention runs inside Hugging Face's module. Newer
    transformers (5.25) keep it in a ``GPTJRotaryEmbedding``; earlier ones (5.17, as on the project's GPU
    image) in each ``GPTJAttention`` itself: the same table (``create_sinusoidal_positions``) either way."""
    for m in getattr(model, "original_model", model).modules():
        name = type(m).__name__
        table = getattr(m, "embed_positions", None)
        if isinstance(table, torch.Tensor) and (name == "GPTJRotaryEmbedding"
                                                or (name.startswith("GPTJ") and "Attention" in name)):
            return table
    return None


def _window(model: Any, l: int, hf_attn: Any) -> int | None:
    hf_cfg = getattr(getattr(model, "original_model", None), "config", None)
    if getattr(hf_attn, "attention_type", None) == "local":  # GPT-Neo
        return int(getattr(hf_cfg, "window_size", 0) or model.cfg.window_size)
    types = getattr(hf_cfg, "layer_types", None)
    sw = getattr(hf_cfg, "sliding_window", None)
    if types:
        return int(sw) if sw and types[l] in ("sliding_attention", "local", "sliding") else None
    if sw and getattr(hf_cfg, "use_sliding_window", True):
        return int(sw)
    return None


def _scale(model: Any, l: int, hf_attn: Any, d_head: int) -> float:
    if type(hf_attn).__name__ == "GPTNeoSelfAttention":
        return 1.0  # GPT-Neo never scales its scores (TransformerLens's cfg says otherwise)
    s = getattr(hf_attn, "scaling", None)
    if isinstance(s, (int, float)) and type(model.blocks[l].attn).__name__ != "JointQKVAttentionBridge":
        return float(s)
    cfg = model.cfg
    if not getattr(cfg, "use_attn_scale", True):
        return 1.0
    base = getattr(cfg, "attn_scale", -1.0)
    base = base if base and base > 0 else math.sqrt(d_head)
    if getattr(cfg, "scale_attn_by_inverse_layer_idx", False):
        base *= l + 1
    return 1.0 / base


def _read(model: Any, dtype: torch.dtype | None) -> Weights:
    cfg = model.cfg
    L, H, dh = int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_head)
    dt = dtype or model.W_E.dtype
    det = lambda t: None if t is None else t.detach().to(dt)  # noqa: E731
    with torch.no_grad():
        layers = []
        parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
        for l, block in enumerate(model.blocks):
            # Each block's own parameters, where they live: the bridge's stacked W_Q… would gather a
            # split model's blocks onto one device (models.placement).
            W = _block_weights(model, block)
            attn = block.attn
            hf = attn.original_component
            ln1 = getattr(block, "ln1", None)
            ln2 = getattr(block, "ln2", None)
            gate_bias = _opt(lambda: block.mlp.gate.original_component.bias)
            qn, kn = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
            softcap = getattr(hf, "attn_logit_softcapping", None)
            layers.append(Layer(
                ln1=_norm(ln1, cfg, dt), ln2=_norm(ln2, cfg, dt),
                post_attn=_norm(getattr(block, "ln1_post", None), cfg, dt),
                post_mlp=_norm(getattr(block, "ln2_post", None), cfg, dt),
                parallel=parallel, mlp_reads_ln1=parallel and ln2 is None and ln1 is not None,
                w_q=det(_flat(W["W_Q"])).contiguous(), b_q=det(_flat_bias(W["b_Q"])),
                w_k=det(_flat(W["W_K"])).contiguous(), b_k=det(_flat_bias(W["b_K"])),
                w_v=det(_flat(W["W_V"])).contiguous(), b_v=det(_flat_bias(W["b_V"])),
                w_o=det(W["W_O"].reshape(H * dh, -1)).contiguous(),
                b_o=det(W["b_O"]),
                q_norm=_norm(qn, cfg, dt), k_norm=_norm(kn, cfg, dt),
                qk_norm_per_head=getattr(attn, "_qk_norm_phase", "post_reshape") != "pre_reshape",
                scale=_scale(model, l, hf, dh),
                softcap=float(softcap) if softcap else None,
                window=_window(model, l, hf),
                w_in=det(W["W_in"]).contiguous(), b_in=det(W["b_in"]),
                w_gate=det(W["W_gate"] if getattr(cfg, "gated_mlp", False) else None),
                b_gate=det(gate_bias),
                w_out=det(W["W_out"]).contiguous(), b_out=det(W["b_out"]),
            ))
        Hkv = int(layers[0].w_k.shape[1]) // dh
        rotary = cfg.positional_embedding_type == "rotary"
        hf0 = model.blocks[0].attn.original_component
        gptj = rotary and _gptj_rotary(model) is not None
        rot_dim = int(getattr(hf0, "rotary_dim", None) or dh) if gptj else int(rotary)  # others: from their tables
        cap = getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0
        W_U = det(model.W_U)
        ln_final = _norm(getattr(model, "ln_final", None), cfg, dt)
        if ln_final is not None and ln_final.weight is not None and ln_final.weight.device != W_U.device:
            # A map may put the final norm and the unembedding apart: its d_model gains go with the
            # unembedding, so the final residual crosses once.
            ln_final = Norm(ln_final.kind, move_opt(ln_final.weight, W_U.device), move_opt(ln_final.bias, W_U.device),
                            ln_final.eps)
        w = Weights(
            n_layers=L, n_heads=H, n_kv_heads=Hkv, d_head=dh, d_model=int(cfg.d_model),
            layers=tuple(layers), ln_final=ln_final,
            W_U=W_U, b_U=det(_opt(lambda: model.b_U)),
            logit_softcap=float(cap) if cap > 0 else None,
            act=ACTIVATIONS[cfg.act_fn], rot_dim=rot_dim, rot_style="pairs" if gptj else "half",
            features={}, dtype=dt, device=model.W_E.device, _model_ref=_ref(model),
            devices=tuple(ly.w_qkv.device for ly in layers), out_device=W_U.device,
        )
        if rotary and not gptj:
            w.rot_dim = int(w.rotary(1)[0][0].shape[-1])
            w._rotary.clear()
        w.features = describe(w)
        return w


_BLOCK_PARAMS = {"W_Q": "attn.W_Q", "W_K": "attn.W_K", "W_V": "attn.W_V", "W_O": "attn.W_O", "b_Q": "attn.b_Q",
                 "b_K": "attn.b_K", "b_V": "attn.b_V", "b_O": "attn.b_O", "W_in": "mlp.W_in", "b_in": "mlp.b_in",
                 "W_gate": "mlp.W_gate", "W_out": "mlp.W_out", "b_out": "mlp.b_out"}


def _block_weights(model: Any, block: Any) -> dict[str, torch.Tensor | None]:
    """One block's processed weights as the bridge's stacked accessors give each block's slice
    (the same attribute paths and q/k/v/o reshapes), on the block's own device."""
    qkv = getattr(model, "_reshape_qkv", lambda t: t)
    o = getattr(model, "_reshape_o", lambda t: t)
    out: dict[str, torch.Tensor | None] = {}
    for name, path in _BLOCK_PARAMS.items():
        t = _opt(lambda path=path: operator.attrgetter(path)(block))
        if t is not None and name in ("W_Q", "W_K", "W_V"):
            t = qkv(t)
        elif t is not None and name == "W_O":
            t = o(t)
        out[name] = t
    return out


def _flat(t: torch.Tensor) -> torch.Tensor:
    """``[n, d, dh]`` → ``[d, n·dh]``."""
    return t.permute(1, 0, 2).reshape(t.shape[1], -1)


def _flat_bias(b: torch.Tensor | None) -> torch.Tensor | None:
    return None if b is None else b.reshape(-1)


def describe(w: Weights) -> dict[str, Any]:
    """The architecture facts the engines (and a circuit's graph) depend on, as plain JSON."""
    l0 = w.layers[0]
    norm = lambda n: None if n is None else n.kind  # noqa: E731
    return {
        "norm": norm(l0.ln1) or norm(l0.post_attn),
        "pre_norms": l0.ln1 is not None,
        "post_norms": l0.post_attn is not None or l0.post_mlp is not None,
        "positions": "rotary" if w.rot_dim else "learned",
        "rotary_dim": w.rot_dim or None,
        "rotary_style": w.rot_style if w.rot_dim else None,
        "n_heads": w.n_heads,
        "n_key_value_heads": w.n_kv_heads,
        "gated_mlp": l0.w_gate is not None,
        "parallel_attn_mlp": l0.parallel,
        "qk_norm": None if l0.q_norm is None else ("per_head" if l0.qk_norm_per_head else "all_heads"),
        "sliding_window": [ly.window for ly in w.layers],
        "attn_softcap": l0.softcap,
        "logit_softcap": w.logit_softcap,
    }


def _rotary_tables(w: Weights, T: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    model = w.model
    if not w.rot_dim:
        return []
    table = _gptj_rotary(model) if w.rot_style == "pairs" else None
    if table is not None:
        # GPT-J: [max_pos, rot_dim] rows of sin|cos halves, each frequency for a pair of dims.
        sin, cos = table[:T, : w.rot_dim].to(w.dtype).chunk(2, dim=-1)
        pair = lambda t: t.repeat_interleave(2, dim=-1).to(w.device)  # noqa: E731
        return _placed(w, [(pair(cos), pair(sin))] * w.n_layers)
    # Everyone else: the model's own cos/sin, read from one short forward (local and global
    # layers may rotate differently, as in Gemma 3, and RoPE scaling variants are all exact).
    names = [f"blocks.{l}.attn.hook_{t}" for l in range(w.n_layers) for t in ("cos", "sin")]
    got: dict[str, torch.Tensor] = {}

    def grab(name: str, act: torch.Tensor, hook: Any) -> None:
        got[name] = act.detach()  # by the name asked for: a hook may be an alias named after another point

    tokens = torch.zeros(1, T, dtype=torch.long, device=w.device)
    with torch.no_grad(), model.hooks(fwd_hooks=[(n, partial(grab, n)) for n in names]):
        model(tokens, return_type=None)
    out = []
    for l in range(w.n_layers):
        cos, sin = got[f"blocks.{l}.attn.hook_cos"], got[f"blocks.{l}.attn.hook_sin"]
        out.append((cos.reshape(-1, cos.shape[-1])[:T].to(w.dtype), sin.reshape(-1, sin.shape[-1])[:T].to(w.dtype)))
    return _placed(w, out)


def _placed(w: Weights, tables: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's cos/sin on that layer's device (the same tensors on one device)."""
    return [(move(c, w.device_of(l)), move(s, w.device_of(l))) for l, (c, s) in enumerate(tables)]


__all__ = ["Layer", "Norm", "Weights", "describe", "read_weights", "supports"]
