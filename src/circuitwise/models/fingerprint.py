"""A model's fingerprint: which architecture, shapes, processing and weights an output was computed on.

Every output file records it, so a circuit or a run folder is never silently used with another model:
two random checkpoints of the same shapes, or the same checkpoint with and without weight processing,
share every shape and differ only here.

The weights hash is blake2b over each parameter's name, shape, dtype and a fixed strided sample of
its values (at most ``SAMPLE`` per parameter), not its full bytes: the full bytes take 0.6 s at
GPT-2 small's shapes on a 2-core CPU and grow with the model (about 5 s at 1B parameters), while
the sample takes about 5 ms at any size. A fine-tune, another seed or another processing changes
nearly every value, so the sample sees it; an edit of a few single weights could escape it.

Two hashes are recorded. ``checkpoint_hash`` is taken by ``load_model`` from the weights as loaded,
before processing: the checkpoint's own bits in the compute dtype, the same on every device.
``weights_hash`` is of the processed weights, whose last bits depend on where processing ran (a
GPU's products round differently from the CPU's). Where both sides have a checkpoint hash, it and
the processing steps identify the model and the processed hash is not compared, so a circuit found
on the CPU is accepted on a GPU; outputs written before it existed are compared by the processed
hash, as they were.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import torch

from circuitwise.models.loading import dtype_of
from circuitwise.models.processing import of as processing_of

# Values hashed per parameter (evenly strided over its flattened elements).
SAMPLE = 65536

# What `evaluate` and resume compare, in the order a message names them.
SHAPE_KEYS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_mlp", "d_vocab")


def _param_bytes(p: torch.Tensor) -> bytes:
    if p.device.type == "meta":  # offloaded without values here (device_map): its shape alone
        return b""
    flat = p.detach().reshape(-1)
    step = max(1, flat.numel() // SAMPLE)
    # A view as bytes works for every dtype (numpy has no bfloat16); the sample is copied to the CPU.
    return flat[::step][:SAMPLE].contiguous().cpu().view(torch.uint8).numpy().tobytes()


def weights_hash(model: Any) -> str:
    """blake2b (128 bits, hex) of every parameter's name, shape, dtype and strided sample of values."""
    h = hashlib.blake2b(digest_size=16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
            h.update(_param_bytes(p))
    return h.hexdigest()


def _processing(model: Any) -> list[str] | None:
    """The processing steps really applied, by name (None: loaded outside circuitwise, not known)."""
    rec = processing_of(model)
    if rec is None:
        return None
    data = rec.to_json()
    if not data.get("requested"):
        return []
    return [s["name"] for s in data.get("steps") or [] if s.get("applied")]


def _compute(model: Any) -> dict[str, Any]:
    cfg = model.cfg

    def num(key: str) -> int | None:
        v = getattr(cfg, key, None)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    n_heads = num("n_heads")
    return {
        "architecture": getattr(cfg, "original_architecture", None) or getattr(cfg, "architecture", None)
        or type(model).__name__,
        "n_layers": num("n_layers"),
        "d_model": num("d_model"),
        "n_heads": n_heads,
        # Multi-head attention has as many key/value heads as query heads; TransformerLens says None then.
        "n_kv_heads": num("n_key_value_heads") or n_heads,
        "d_head": num("d_head"),
        "d_mlp": num("d_mlp"),
        "d_vocab": num("d_vocab"),
        "processing": _processing(model),
        "dtype": dtype_of(model),
        "weights_hash": weights_hash(model),
        # Set by load_model before processing (None for a model loaded elsewhere).
        "checkpoint_hash": getattr(model, "circuitwise_checkpoint_hash", None),
    }


# One fingerprint per model, redone when a parameter is replaced or changed in place (version counters),
# as models.weights caches its stacked weights.
_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], dict[str, Any]]] = weakref.WeakKeyDictionary()


def _versions(model: Any) -> tuple[int, ...]:
    return tuple(v for p in model.parameters() for v in (id(p), p._version))


def fingerprint(model: Any) -> dict[str, Any]:
    """The model's fingerprint (a JSON object; cached per model): see the module's docstring."""
    key = _versions(model)
    try:
        hit = _CACHE.get(model)
    except TypeError:  # not weak-referenceable: computed each time
        return _compute(model)
    if hit is not None and hit[0] == key:
        return dict(hit[1])
    fp = _compute(model)
    _CACHE[model] = (key, fp)
    return dict(fp)


def differences(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words; keys either lacks are not compared."""
    out = []
    # The checkpoint's hash where both have one (device-independent), else the processed weights'.
    weights = "checkpoint_hash" if have.get("checkpoint_hash") and want.get("checkpoint_hash") else "weights_hash"
    for key in ("architecture", *SHAPE_KEYS, "dtype", "processing", weights):
        a, b = have.get(key), want.get(key)
        if a is None or b is None or a == b:
            continue
        if key == "processing":
            a = ", ".join(a) or "none"
            b = ", ".join(b) or "none"
            key = "processing steps"
        elif key == "weights_hash":
            key = "weights (hash)"
        elif key == "checkpoint_hash":
            key = "checkpoint weights (hash)"
        out.append(f"{key} {a} vs {b}")
    return out


def mismatch(have: dict[str, Any] | None, want: dict[str, Any], *, what: str, have_name: Any,
             want_name: Any) -> str | None:
    """A message naming both models and what differs, or None where the fingerprints agree.

    ``have`` is the fingerprint recorded in ``what`` (a file or folder), ``want`` the loaded model's.
    """
    if not have:
        return None
    diff = differences(have, want)
    if not diff:
        return None
    return (f"{what} was computed on model {have_name!r}, not on the loaded model {want_name!r}: "
            f"{'; '.join(diff)} (recorded vs loaded).")


def check_same_model(recorded: dict[str, Any], model: Any, *, what: str, loaded_name: Any,
                     fix: str, allow_other: bool = False) -> str | None:
    """Raise ConfigError where ``recorded`` (a file's model info) names another model than ``model``.

    Returns a warning to show instead where the file records no fingerprint (written before
    circuitwise recorded one: only what it does record can be compared), or where ``allow_other``
    lets a mismatch through; None where the fingerprints agree.
    """
    from circuitwise.errors import ConfigError  # errors imports nothing; local keeps models/ light

    have = recorded.get("fingerprint") if isinstance(recorded, dict) else None
    have_name = recorded.get("name") if isinstance(recorded, dict) else None
    if not isinstance(have, dict):
        return (f"{what} records no model fingerprint (written before circuitwise recorded one), so it cannot be "
                f"told whether it was found on the loaded model {loaded_name!r}; only its shapes are checked. "
                "Re-create it with this circuitwise to have the model checked.")
    msg = mismatch(have, fingerprint(model), what=what, have_name=have_name, want_name=loaded_name)
    if msg is None:
        return None
    if allow_other:
        return msg + " Used anyway (--ignore-fingerprint)."
    raise ConfigError(f"{msg} {fix}")


__all__ = ["SAMPLE", "SHAPE_KEYS", "check_same_model", "differences", "fingerprint", "mismatch", "weights_hash"]
