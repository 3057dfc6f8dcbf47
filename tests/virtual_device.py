"""A virtual accelerator on the CPU: catches what would fail on CUDA or MPS without a GPU.

On the CPU every tensor is on the one device, so a tensor made without ``device=`` and then mixed
with the model's activations works here and raises "Expected all tensors to be on the same device"
on a GPU. :class:`VirtualDevice` (a ``TorchFunctionMode``) follows every tensor's *virtual* device:

- the model's parameters and buffers are on the accelerator (:func:`on_accelerator`), and so is
  whatever is computed from them; a tensor made with ``device=`` the accelerator, or moved there with
  ``.to(...)``, is too;
- a tensor made without ``device=`` (or on ``"cpu"``), from numpy, or moved with ``.cpu()`` is on
  the host; a tensor the mode never saw made (autograd's gradients, tensors made before the mode)
  is unknown and takes the device of what it meets.

The accelerator is ``torch.device("cpu", 0)``: a real CPU device (every number is the CPU's) that
compares unequal to ``torch.device("cpu")``, so ``x.device`` of an accelerator tensor answers it,
and code that takes its device from the model (``device=x.device``, ``.to(model.cfg.device)``)
puts its tensors there as it would on a GPU. Load the model with ``device="cpu:0"`` so that
``model.cfg.device`` names it, then :func:`model_on_accelerator`; :func:`split_to_host` then moves
its second half of blocks to the host, as bench/device_check.py splits a model between a GPU and the CPU.

The mode raises (and records) where CUDA would: an operation whose tensor arguments are on both the
accelerator and the host (a host tensor of zero dimensions is a scalar and allowed, as CUDA allows
it), an accelerator index into a host tensor, an advanced-index assignment of a host value into an
accelerator tensor, ``.numpy()`` of an accelerator tensor, a CPU generator drawing on the
accelerator. With ``mps=True`` it also raises where MPS would: any float64 tensor on the
accelerator (MPS has no float64), and it makes ``models.precision.wide_dtype`` answer float32 there.
Copies between devices (``copy_``, basic-index assignment, ``.to``) are allowed, as on a GPU.

What it cannot see: code that branches on ``device.type`` (it sees "cpu" and takes the CPU's path,
``torch.cuda.*`` calls included), ops that CUDA or MPS does not implement, numerical differences
between devices, and a mix where one side was made before the mode or by autograd (unknown).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

ACCELERATOR = torch.device("cpu", 0)
_TAG = "_virtual_device"  # True: on the accelerator; False: on the host; absent: unknown

# Tensor factories: on the accelerator only with device= the accelerator.
_FACTORIES = frozenset({
    "zeros", "ones", "empty", "full", "arange", "range", "eye", "linspace", "logspace", "tensor",
    "rand", "randn", "randint", "randperm", "normal", "empty_strided", "scalar_tensor", "from_numpy",
    "frombuffer", "tril_indices", "triu_indices", "bartlett_window", "hann_window", "hamming_window",
})
# From another tensor: its device unless device= says otherwise.
_LIKE = frozenset({"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
                   "randint_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "as_tensor"})
_WIDE = (torch.float64, torch.complex128)


class DeviceMixError(RuntimeError):
    """What CUDA or MPS would have raised."""


def on_accelerator(*tensors: torch.Tensor) -> None:
    """Put ``tensors`` (e.g. a model's parameters and buffers) on the virtual accelerator."""
    for t in tensors:
        setattr(t, _TAG, True)


def model_on_accelerator(model: Any) -> Any:
    """Every parameter and buffer of ``model`` on the virtual accelerator; returns the model."""
    on_accelerator(*model.parameters(), *model.buffers())
    return model


def where(t: torch.Tensor) -> bool | None:
    """True on the accelerator, False on the host, None when unknown."""
    return getattr(t, _TAG, None)


def _tensors(x: Any) -> Iterator[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for y in x:
            yield from _tensors(y)
    elif isinstance(x, dict):
        for y in x.values():
            yield from _tensors(y)


def _is_accelerator(d: Any) -> bool:
    return d is not None and not isinstance(d, (int, torch.dtype)) and torch.device(d) == ACCELERATOR


def _device_arg(args: tuple, kwargs: dict) -> tuple[bool, Any]:
    """``(given, device)`` of a ``.to(...)`` call: a device, a tensor (its device), or not given."""
    if "device" in kwargs:
        return True, kwargs["device"]
    for a in args[1:]:
        if isinstance(a, torch.Tensor):
            return True, a
        if isinstance(a, (str, torch.device)):
            return True, a
    return False, None


class VirtualDevice(TorchFunctionMode):
    """Follows each tensor's virtual device; raises (and records in :attr:`errors`) where a GPU would."""

    def __init__(self, *, mps: bool = False):
        super().__init__()
        self.mps = mps
        self.errors: list[str] = []

    def _fail(self, message: str) -> None:
        stack = "".join(traceback.format_stack(limit=12)[:-2])
        self.errors.append(f"{message}\n{stack}")
        raise DeviceMixError(message)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: C901 - one table of rules
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        owner = getattr(func, "__self__", None)
        if name == "__get__" and getattr(owner, "__name__", None) == "device":
            real = func(*args, **kwargs)
            return ACCELERATOR if where(args[0]) else real
        tensors = list(_tensors(args)) + list(_tensors(kwargs))
        if name in ("numpy", "__array__") and where(args[0]):
            self._fail(f"can't convert an accelerator tensor to numpy ({name}): use .cpu() first")
        if name == "__getitem__":
            self._check_index(args[0], args[1])
            return self._tag(func(*args, **kwargs), where(args[0]))
        if name == "__setitem__":
            self._check_index(args[0], args[1])
            value = args[2]
            advanced = any(True for _ in _tensors(args[1])) or isinstance(args[1], list)
            if (advanced and isinstance(value, torch.Tensor) and value.dim() > 0
                    and where(value) is not None and where(args[0]) is not None and where(value) != where(args[0])):
                self._fail("index_put_: the values are on another device than the indexed tensor")
            return func(*args, **kwargs)
        if name == "copy_":  # copies across devices; the target keeps its own
            return func(*args, **kwargs)
        if name in ("to", "cpu", "cuda"):
            out = func(*args, **kwargs)
            if name == "cpu":
                tag: bool | None = False
            elif name == "cuda":
                tag = True
            else:
                given, d = _device_arg(args, kwargs)
                tag = (where(d) if isinstance(d, torch.Tensor) else _is_accelerator(d)) if given else where(args[0])
            if out is args[0] and tag is not None and where(out) is not None and where(out) != tag:
                out = out.clone()  # a real move copies; the tensor left behind keeps its device
            return self._tag(out, tag)
        # torch.tensor of a list reads its values (a new host tensor); of one tensor, copies it where it is.
        if name in _FACTORIES and not (name == "tensor" and args and isinstance(args[0], torch.Tensor)):
            dev = kwargs.get("device")
            tag = _is_accelerator(dev)
            if tag and isinstance(kwargs.get("generator"), torch.Generator) \
                    and kwargs["generator"].device.type == "cpu":
                self._fail(f"{name}: a CPU generator cannot draw on the accelerator")
            return self._tag(func(*args, **kwargs), tag)
        if name in _LIKE:
            if "device" in kwargs and kwargs["device"] is not None:
                tag = _is_accelerator(kwargs["device"])
            else:
                tag = where(args[0]) if isinstance(args[0], torch.Tensor) else False
            return self._tag(func(*args, **kwargs), tag)
        on = [t for t in tensors if where(t) is True]
        host = [t for t in tensors if where(t) is False and t.dim() > 0]
        if on and host:
            self._fail(f"{name}: expected all tensors to be on the same device, found the accelerator "
                       f"{[tuple(t.shape) for t in on][:3]} and the host {[tuple(t.shape) for t in host][:3]}")
        tag = True if on else (False if any(where(t) is False for t in tensors) else None)
        return self._tag(func(*args, **kwargs), tag)

    def _check_index(self, t: Any, index: Any) -> None:
        if isinstance(t, torch.Tensor) and where(t) is False:
            if any(where(i) is True and i.dim() > 0 for i in _tensors(index)):
                self._fail("indices should be either on the host or on the same device as the indexed tensor (host)")

    def _tag(self, out: Any, tag: bool | None) -> Any:
        if tag is None:
            return out
        for t in _tensors(out):
            if t is not None:
                setattr(t, _TAG, tag)
                if tag and self.mps and t.dtype in _WIDE:
                    self._fail(f"MPS has no float64: a {t.dtype} tensor {tuple(t.shape)} on the accelerator")
        return out


@contextmanager
def virtual_device(*, mps: bool = False) -> Iterator[VirtualDevice]:
    """The mode, with ``wide_dtype`` answering float32 on the accelerator when ``mps``."""
    import sys

    from circuitwise.models import precision

    real = precision.wide_dtype

    def wide(device: torch.device | str) -> torch.dtype:
        return torch.float32 if torch.device(device) == ACCELERATOR else real(device)

    patched = []
    if mps:  # every module that imported the name
        for mod in list(sys.modules.values()):
            if mod is not None and getattr(mod, "wide_dtype", None) is real:
                patched.append(mod)
                mod.wide_dtype = wide  # type: ignore[attr-defined]
    mode = VirtualDevice(mps=mps)
    try:
        with mode:
            yield mode
    finally:
        for mod in patched:
            mod.wide_dtype = real  # type: ignore[attr-defined]


def split_to_host(model: Any) -> Any:
    """``model`` (loaded on :data:`ACCELERATOR`, see :func:`model_on_accelerator`) split as
    bench/device_check.py splits a GPU model: the second half of its blocks on the host, each block (and
    the final norm and the unembedding) with accelerate's ``AlignDevicesHook`` bringing its inputs to
    it, ``cfg.n_devices`` 2. The engines must then move what they carry where the device changes."""
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    L = model.cfg.n_layers
    for i, block in enumerate(model.blocks):
        dev = ACCELERATOR if i < L // 2 else torch.device("cpu")
        if dev != ACCELERATOR:
            for t in (*block.parameters(), *block.buffers()):
                setattr(t, _TAG, False)
        add_hook_to_module(block.original_component, AlignDevicesHook(execution_device=dev, io_same_device=False))
    for mod in (model.ln_final, model.unembed):
        add_hook_to_module(mod.original_component, AlignDevicesHook(execution_device=ACCELERATOR, io_same_device=False))
    model.cfg.n_devices = 2
    return model
