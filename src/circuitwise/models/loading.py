"""load_model(): a TransformerLens 4 ``TransformerBridge`` in compatibility mode.

TransformerLens 4 removed ``HookedTransformer``; the bridge wraps the Hugging Face model and,
once ``enable_compatibility_mode`` has run, exposes the familiar hook names and
``ActivationCache`` methods with HookedTransformer's weight processing (the seed's processing).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from circuitwise.errors import MemoryBudgetError, ModelLoadError
from circuitwise.models.hub import check_hub, hub_offline, offline_help
from circuitwise.models.load_errors import boot_error, check_causal, check_local_folder
from circuitwise.models.processing import Processing, not_requested, plan, record, snapshot

if TYPE_CHECKING:
    from circuitwise.models.memory import Stage

log = logging.getLogger(__name__)


def pick_device(device: str | None = None) -> str:
    """cuda, then mps, then cpu — unless the user named one (which must then exist)."""
    if device is not None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(
                f"--device {device} was asked for but no CUDA GPU is visible to torch. "
                "Leave --device unset to pick the best available device, or use --device cpu."
            )
        if device == "mps" and not (
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        ):
            raise ModelLoadError(
                "--device mps was asked for but MPS is not available. Use --device cpu."
            )
        if device.split(":")[0] not in {"cpu", "cuda", "mps"}:
            raise ModelLoadError(f"Unknown device {device!r}. Use cpu, cuda, cuda:N or mps.")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


DEVICE_MAPS = ("auto", "balanced", "sequential")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_CONFIG_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16",
                  "torch.float32": "float32", "torch.bfloat16": "bfloat16", "torch.float16": "float16"}


def pick_dtype(dtype: str | None, device: str, target: str, is_local: bool) -> torch.dtype:
    """The compute dtype: the one asked for, or for ``auto`` the checkpoint's own on a GPU and float32
    on a CPU (half-precision matrix products are slow there, and float32 is the reference)."""
    if dtype in (None, "auto"):
        if device.split(":")[0] == "cpu":
            return torch.float32
        return DTYPES[checkpoint_dtype(target, is_local) or "float32"]
    if dtype not in DTYPES:
        raise ModelLoadError(f"Unknown --dtype {dtype!r}. Use auto, float32, bfloat16 or float16.")
    return DTYPES[dtype]


def checkpoint_dtype(target: str, is_local: bool) -> str | None:
    """The dtype a checkpoint's config.json names (``torch_dtype``, or ``dtype`` in newer transformers)."""
    try:
        if is_local:
            import json

            cfg = json.loads((Path(target) / "config.json").read_text(encoding="utf-8"))
        else:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(target).to_dict()
    except Exception:  # unreadable here means boot will say why; float32 is the safe answer
        return None
    for key in ("dtype", "torch_dtype"):
        name = _CONFIG_DTYPES.get(str(cfg.get(key)))
        if name:
            return name
    return None


def dtype_of(model) -> str:
    """The dtype a model computes in, as a name (``float32``, ``bfloat16``…): what every output records."""
    return str(model.W_E.dtype).removeprefix("torch.")


def resolve_name(name_or_path: str) -> tuple[str, bool]:
    """Map a short name (``bundled``) or a path to what ``boot_transformers`` takes.

    Returns ``(target, is_local)``.
    """
    from circuitwise.models.bundled import BUNDLED_NAMES, bundled_path

    if name_or_path in BUNDLED_NAMES:
        return str(bundled_path(name_or_path)), True
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise ModelLoadError(
                f"{name_or_path!r} exists but is not a Hugging Face checkpoint folder (no "
                "config.json in it). Pass the folder that holds config.json, model.safetensors "
                "and the tokenizer files."
            )
        if not any(path.glob("*.safetensors")):
            raise ModelLoadError(
                f"{name_or_path!r} has no *.safetensors weights. circuitwise never loads pickled "
                "weights (pytorch_model.bin); convert them with "
                "`AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, "
                "safe_serialization=True)`."
            )
        check_local_folder(path, name_or_path)
        return str(path.resolve()), True
    # Hub ids are "name" or "org/name"; anything else that does not exist is a mistyped path.
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(
            f"No such model folder: {name_or_path!r}. Check the path, or give a Hub name such as "
            "'gpt2' or 'EleutherAI/pythia-70m', or --model bundled."
        )
    return name_or_path, False


def check_loadable(name_or_path: str) -> None:
    """Fail now, as :func:`load_model` would, where the name alone decides it: a missing or malformed
    checkpoint folder, or a Hub name with the Hub unreachable and no cached copy (one connection attempt).

    For commands that load several models: the second one's mistake is found before the first one loads.
    """
    target, is_local = resolve_name(name_or_path)
    if not is_local:
        check_hub(target)


def check_stages_fit(name_or_path: str, stages: Sequence[Stage], *, device: str | None = None,
                     dtype: str | None = "auto", max_memory: int | None = None, processing: bool = True,
                     split: bool = False, what: str = "This command", skips: Mapping[Stage, str] | None = None) -> None:
    """Refuse, before the model loads, a command one of whose ``stages`` cannot fit even one one-token prompt
    beside the model in the budget: the check the memory plan makes after loading
    (:func:`~circuitwise.models.memory.refuse_unless_fits`) at the shortest prompt, so a budget that holds
    the weights but no stage is refused without the load's wait. A local checkpoint only (a Hub name's
    config is not read before loading); a model split over devices is planned once loaded."""
    from circuitwise.models.memory import FREE_SHARE, Shapes, available_bytes, estimate, fixes, resident
    from circuitwise.sizes import human

    if not stages or split:
        return
    target, is_local = resolve_name(name_or_path)
    if not is_local:
        return
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev, target, is_local)
    s = Shapes.from_config(target, torch_dtype, processing=processing)
    if s is None:
        return
    # With no --max-memory the plan's budget is a share of what is free once the model is in, plus what the model
    # holds (memory.budget_of): a stage may use FREE_SHARE of what loading leaves free. Loading takes at most
    # the free memory now, and the model's estimate (resident) is an upper bound of what it takes (on a CPU it
    # counts the runtime, already in use now), so the model is taken at nothing here: a stage is refused only
    # where it cannot fit in a share of what is free now, which the plan would refuse too.
    held = resident(s, dev)
    free = 0 if max_memory else available_bytes(dev)
    budget = max_memory or int(FREE_SHARE * free + held)
    for stage in stages:
        need = estimate(stage, s, 1, 1, dev)
        if need > budget:
            dtype = str(torch_dtype).removeprefix("torch.")
            if max_memory:
                said = (f"{what} does not fit in {human(budget)} (--max-memory): with {name_or_path} in {dtype}, its "
                        f"{stage} stage needs about {human(need)} even for a one-token prompt")
            else:
                said = (f"{what} does not fit in the {human(free)} free now: with {name_or_path} in {dtype}, its "
                        f"{stage} stage needs about {human(need - held)} beside the model even for a one-token "
                        f"prompt, more than the {human(budget - held)} a plan may use of it")
            raise MemoryBudgetError(f"{said}; nothing was loaded. " + fixes(s, (skips or {}).get(stage), prompts=False))


def load_model(
    name_or_path: str,
    *,
    device: str | None = None,
    processing: bool = True,
    trust_remote_code: bool = False,
    dtype: str | None = None,
    max_memory: int | None = None,
    device_map: str | dict[str, str | int] | None = None,
    n_devices: int | None = None,
):
    """Load a model as a TransformerLens ``TransformerBridge`` ready for analysis.

    Args:
        name_or_path: a Hub name (``gpt2``, ``EleutherAI/pythia-70m``), a local Hugging Face
            checkpoint folder, or ``bundled`` for circuitwise's own small model.
        device: ``cpu``, ``cuda[:N]`` or ``mps``; default cuda, then mps, then cpu.
        processing: apply the seed's weight processing (fold_ln, center_writing_weights,
            center_unembed, refactor_factored_attn_matrices) as far as the architecture allows;
            what was applied, and why anything was skipped, is ``bridge.circuitwise_processing``
            (a :class:`Processing`). Turn off to analyse raw weights.
        trust_remote_code: forwarded to Hugging Face; off unless you ask.
        dtype: ``auto`` (default: the checkpoint's dtype on a GPU, float32 on a CPU), ``float32``,
            ``bfloat16`` or ``float16``. The weights are loaded and processed in it; the engines
            compute in it and accumulate long sums in float32. ``dtype_of(model)`` names it.
        max_memory: bytes the model and its stages may use (``--max-memory``); default a share of
            the device's free memory. A local checkpoint that cannot fit is refused before loading.
        device_map: ``auto``, ``balanced`` or ``sequential``: split the model over the visible
            devices (TransformerLens's ``boot_transformers(device_map=…)``, accelerate), instead of
            ``device``; from Python also an explicit Hugging Face map ``{module: device}``.
            ``n_devices``: split over this many CUDA devices. The engines follow a split model's
            blocks (each block's weights where they live; :mod:`circuitwise.models.placement`).

    Raises:
        ModelLoadError: with the fix — an offline Hub, a bad folder, an unsupported architecture.
    """
    target, is_local = resolve_name(name_or_path)
    # One check of the Hub, before anything reads from it (the dtype below may read its config.json):
    # unreachable, a cached model loads offline and anything else fails now, without retries.
    offline = not is_local and check_hub(target)
    # Imported after the check: TransformerLens takes seconds to import, which an offline failure need not wait for.
    from transformer_lens.model_bridge import TransformerBridge
    _quiet_transformers()
    if isinstance(device_map, str) and device_map not in DEVICE_MAPS:
        raise ModelLoadError(f"Unknown --device-map {device_map!r}. Use {', '.join(DEVICE_MAPS)}.")
    if (device_map is not None or n_devices is not None) and device is not None:
        raise ModelLoadError("--device and --device-map/--n-devices exclude each other: give --device for one "
                             "device, or --device-map auto to let the model be split over every visible device.")
    if n_devices is not None and not 1 <= n_devices <= torch.cuda.device_count():
        if torch.cuda.device_count() == 0:
            raise ModelLoadError(f"--n-devices {n_devices} splits the model over CUDA devices, and none is visible. "
                                 "Leave --n-devices out to run on this machine's "
                                 f"{'CPU' if not torch.backends.mps.is_available() else 'MPS device'}, or run "
                                 "where a GPU is.")
        raise ModelLoadError(f"--n-devices {n_devices}: {torch.cuda.device_count()} CUDA devices are visible; "
                             "give 1 to that many, or --device-map auto.")
    split = device_map is not None or n_devices is not None
    dev = pick_device(device)
    with hub_offline(offline):
        torch_dtype = pick_dtype(dtype, dev, target, is_local)
    if is_local and not split:  # split over devices, one device's free memory says nothing
        _check_fits(target, name_or_path, torch_dtype, dev, max_memory, processing)
    try:
        with hub_offline(offline), torch.inference_mode(False):
            where = ({"device_map": device_map, "n_devices": n_devices,
                      "max_memory": split_max_memory(max_memory, device_map, n_devices)} if split else {"device": dev})
            bridge = TransformerBridge.boot_transformers(
                target, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                **{k: v for k, v in where.items() if v is not None},
            )
    except ModelLoadError:
        raise
    except OSError as e:
        low = str(e).lower()
        if not is_local and ("connect" in low or "offline" in low):
            raise ModelLoadError(offline_help(target)) from e
        raise boot_error(name_or_path, e, device=dev) from e
    except Exception as e:  # any library's failure becomes one message with the fix
        raise boot_error(name_or_path, e, device=dev) from e
    check_causal(bridge, name_or_path)
    from circuitwise.models.fingerprint import weights_hash  # it imports this module

    # The checkpoint's weights before processing, whose bits no device or thread count changes: the
    # fingerprint's identity of the model (models.fingerprint).
    bridge.circuitwise_checkpoint_hash = weights_hash(bridge)  # type: ignore[attr-defined]
    bridge.circuitwise_processing = _process(bridge, name_or_path, processing, dev)  # type: ignore[attr-defined]
    if torch_dtype != torch.float32:
        failure = _half_precision_failure(bridge)
        if failure is not None:
            if dtype not in (None, "auto"):
                raise ModelLoadError(
                    f"TransformerLens cannot run {name_or_path!r} in {dtype} ({failure}). "
                    "Use --dtype float32 (or --dtype auto, which falls back to float32 here)."
                )
            log.warning("%s: TransformerLens cannot run this model in %s (%s); loading it in float32 instead.",
                        name_or_path, str(torch_dtype).removeprefix("torch."), failure)
            return load_model(name_or_path, device=device, processing=processing,
                              trust_remote_code=trust_remote_code, dtype="float32", max_memory=max_memory,
                              device_map=device_map, n_devices=n_devices)
    bridge.eval()
    for p in bridge.parameters():
        p.requires_grad_(False)
    # Remembered so results and re-run configs can name what was loaded.
    bridge.circuitwise_name = name_or_path  # type: ignore[attr-defined]
    bridge.circuitwise_max_memory = max_memory  # type: ignore[attr-defined]  # models.memory.budget_of
    return bridge


def split_max_memory(max_memory: int | None, device_map: Any, n_devices: int | None = None
                     ) -> dict[int | str, int] | None:
    """``--max-memory`` as accelerate's per-device cap when the model is split (each of the first
    ``n_devices`` GPUs, else each visible one, else the CPU), so that the layers are placed within it;
    an explicit ``{module: device}`` map places them itself."""
    if max_memory is None or isinstance(device_map, dict):
        return None
    n = n_devices or torch.cuda.device_count()
    return {i: int(max_memory) for i in range(n)} if n else {"cpu": int(max_memory)}


def _process(bridge, name_or_path: str, processing: bool, device: str) -> Processing:
    """Compatibility mode with every processing step the architecture admits; the truth recorded."""
    if not processing:
        try:
            bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
        except Exception as e:
            raise _processing_error(name_or_path, e, device, processing=False) from e
        return not_requested()
    p = plan(bridge)
    before = snapshot(bridge)
    try:
        with _tl_warnings_to_log(), _one_thread():
            bridge.enable_compatibility_mode(disable_warnings=True, no_processing=False, **p.ask)
    except Exception as e:
        raise _processing_error(name_or_path, e, device, processing=True) from e
    rec = record(bridge, p, before)
    for note in rec.notes():
        log.info("%s: %s", name_or_path, note)
    return rec


def _check_fits(folder: str, name: str, dtype: torch.dtype, device: str, max_memory: int | None,
                processing: bool = True) -> None:
    """Refuse, before loading, a model that cannot sit in the budget; warn when loading may peak past it."""
    from circuitwise.models.memory import Shapes, default_budget, fixes, load_peak, resident
    from circuitwise.sizes import human

    s = Shapes.from_config(folder, dtype, processing=processing)
    if s is None:
        return
    budget = max_memory or default_budget(device)
    held = resident(s, device)
    if held > budget:
        raise MemoryBudgetError(
            f"{name} in {str(dtype).removeprefix('torch.')} needs about {human(held)} once loaded "
            f"({human(s.weight_bytes)} of weights), more than the {human(budget)} "
            f"{'given by --max-memory' if max_memory else 'free now'}; nothing was loaded. {fixes(s, prompts=False)}")
    if load_peak(s, device) > budget:
        log.warning("%s: loading may peak at about %s, more than the %s budget.", name,
                    human(load_peak(s, device)), human(budget))


def _half_precision_failure(bridge) -> str | None:
    """Why the bridge cannot run a forward in its half-precision dtype, or None when it can.

    Some of TransformerLens 4.3's attention bridges mix a float32 pattern with half-precision
    values (OLMo 2: "expected m1 and m2 to have the same dtype"); a two-token forward finds out
    before any work, not half-way through a study.
    """
    tokens = torch.zeros(1, 2, dtype=torch.long, device=bridge.W_E.device)
    try:
        with torch.no_grad():
            bridge(tokens)
    except (RuntimeError, TypeError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def _processing_error(name_or_path: str, e: Exception, device: str, *, processing: bool) -> ModelLoadError:
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return boot_error(name_or_path, e, device=device)
    what = "weight processing" if processing else "compatibility mode"
    fix = (
        "Retry with --no-processing to analyse the raw weights"
        if processing
        else "This architecture cannot be analysed through TransformerLens's compatibility mode"
    )
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ModelLoadError(
        f"TransformerLens failed during {what} of {name_or_path!r} ({type(e).__name__}: {detail}). "
        f"{fix}; if it persists, report it with the model's config.json."
    )


@contextmanager
def _one_thread() -> Iterator[None]:
    # The processed weights must not depend on how many threads torch has: a CPU product split over
    # 2 threads rounds differently from one over 1 (refactor_factored_attn_matrices: ~1e-6), and every
    # command picks its threads from how busy the cores are, so the fingerprint's weights hash of one
    # checkpoint differed between commands and `evaluate` refused a circuit `circuit` had just found.
    # One thread costs little: processing is a few products per layer.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _tl_warnings_to_log() -> Iterator[None]:
    # TL warns when it drops a step itself (post-norm adapters); our record says so once, with
    # the reason, so its UserWarnings would only repeat it on the user's terminal.
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        log.debug("TransformerLens: %s", w.message)


def _quiet_transformers() -> None:
    # Progress bars from transformers would interleave with circuitwise's own progress display.
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # an older transformers without the switch: cosmetic only
        pass


__all__ = ["DTYPES", "check_loadable", "check_stages_fit", "checkpoint_dtype", "dtype_of", "load_model", "pick_device",
           "pick_dtype", "resolve_name", "split_max_memory"]
