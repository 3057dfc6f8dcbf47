"""Transcoders on disk: circuitwise's own layout, circuit-tracer's per-layer and CLT layouts, Gemma Scope's.

:func:`load_transcoders` tells the layout from the folder's files; :func:`save_transcoders` writes any
of them. The layouts, as circuit-tracer (decoderesearch/circuit-tracer) and Gemma Scope write them:

``circuitwise``
    ``transcoders.safetensors`` (keys ``layers.{l}.W_enc`` … in :class:`~.transcoder.Transcoder`'s own
    shapes) and ``transcoders.json`` (activation, k, site, model name and fingerprint, the card, and
    the safetensors file's sha256, so a changed or truncated file is refused).
``circuit-tracer`` (per-layer)
    ``config.yaml`` (``model_name``, ``model_kind: transcoder_set``, ``feature_input_hook``,
    ``feature_output_hook``, optional ``activation``/``k`` and an optional ``transcoders`` list of
    files) and ``layer_{i}.safetensors`` with ``W_enc [n, d_in]`` (read with ``F.linear``),
    ``W_dec [n, d_out]``, ``b_enc``, ``b_dec``, optional ``W_skip [d_out, d_in]`` (applied as
    ``x @ W_skip.T``), ``activation_function.threshold`` (JumpReLU) and, when read, ``k`` (TopK).
    circuitwise writes TopK's ``k`` to ``config.yaml`` only. Checked against circuit-tracer 0.5 itself
    (``bench/circuit_tracer_formats.py``): ReLU and JumpReLU sets load there with identical activations and
    reconstructions. Its loaders build ReLU or JumpReLU only, so a TopK set needs its ``TopK(k)`` put in
    by hand, and its ``TopK`` keeps negative top-k values where circuitwise's clamps them at 0.
``circuit-tracer-clt``
    ``config.yaml`` with ``model_kind: cross_layer_transcoder``; ``W_enc_{i}.safetensors`` holding
    ``W_enc_{i} [n, d_in]``, ``b_enc_{i}``, ``b_dec_{i} [d_out]``, optional ``threshold_{i}``, and
    ``W_dec_{i}.safetensors`` holding ``W_dec_{i} [n, n_layers − i, d_out]``. circuit-tracer's CLT
    files carry no skip path; circuitwise adds ``W_skip_{i} [d_in, d_out]`` (its CLT class's
    ``x @ W_skip[i]``) to the encoder file, which circuit-tracer ignores: a CLT's skip path does not
    survive a trip through circuit-tracer (its own save drops one too).
``gemma-scope``
    ``layer_{i}/…/params.npz`` with ``W_enc [d_in, n]``, ``W_dec [n, d_out]``, ``b_enc``, ``b_dec``,
    ``threshold`` (JumpReLU, no skip path); read with ``allow_pickle=False``. A circuit-tracer
    ``config.yaml`` whose ``transcoders`` list names ``.npz`` files reads them the same way.

Pickled checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, ``.pkl``) are never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from circuitwise.errors import TranscoderError
from circuitwise.features.transcoder import Activation, Site, Transcoder, TranscoderSet

Layout = Literal["circuitwise", "circuit-tracer", "circuit-tracer-clt", "gemma-scope"]
LAYOUTS: tuple[str, ...] = get_args(Layout)

FORMAT = "circuitwise-transcoders"
VERSION = 1
WEIGHTS = "transcoders.safetensors"
MANIFEST = "transcoders.json"
CONFIG = "config.yaml"
CARD_MD, CARD_JSON = "CARD.md", "card.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")

# The transcoders shipped in the package: models/bundled's names → features/bundled/<folder>.
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED = {"bundled": "bundled", "bundled-llama": "bundled_llama"}

# circuit-tracer names the hooks by TransformerLens's names inside a block.
_INPUT_HOOKS: dict[str, Site] = {
    "hook_resid_mid": "resid_mid",
    "ln2.hook_normalized": "mlp_in", "ln2.hook_out": "mlp_in", "mlp.hook_in": "mlp_in", "hook_mlp_in": "mlp_in",
}
_WRITE_INPUT_HOOK: dict[Site, str] = {"resid_mid": "hook_resid_mid", "mlp_in": "ln2.hook_normalized"}
_OUTPUT_HOOKS = ("hook_mlp_out", "mlp.hook_out")


# -- helpers ---------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary file in its folder, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would keep the files from everyone else
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic(path, lambda p: save_file(data, str(p)))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise TranscoderError(f"{path} is missing; the transcoder folder is incomplete (copy the whole folder, "
                              "or re-save it with `circuitwise transcoders convert`)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise TranscoderError(f"{path} is not a readable safetensors file ({e}); re-download or re-save it") from e


def _key(tensors: dict[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    if key not in tensors:
        raise TranscoderError(f"{path} has no {key!r} (it has {sorted(tensors)}); it is not a transcoder of "
                              "this layout: check the file, or name the layout it was written in")
    return tensors[key].float()


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise TranscoderError(f"{path} is a pickled checkpoint, which circuitwise never loads (a pickle can run "
                              "code). Convert it to safetensors where you trust it (safetensors.torch.save_file "
                              "of its tensors) and load that")


def _layer_files(folder: Path, pattern: str) -> dict[int, Path]:
    """``{layer: path}`` of the files in ``folder`` named like ``pattern`` (one ``(\\d+)`` group)."""
    rx = re.compile(pattern)
    out: dict[int, Path] = {}
    for p in folder.iterdir():
        m = rx.fullmatch(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def _contiguous(files: dict[int, Any], folder: Path, what: str) -> list[Any]:
    if not files:
        raise TranscoderError(f"{folder} has no {what} files; point at the folder that holds them")
    missing = sorted(set(range(max(files) + 1)) - set(files))
    if missing:
        raise TranscoderError(f"{folder} has {what} files for layers {sorted(files)} but not for layer(s) {missing}; "
                              "every layer from 0 up needs one (copy the missing file)")
    return [files[i] for i in range(len(files))]


# -- reading ---------------------------------------------------------------------------------------

def detect_layout(path: Path) -> Layout:
    """The layout of the transcoder folder ``path``, from its files."""
    if path.is_file():
        _refuse_pickle(path)
        raise TranscoderError(f"{path} is a file; point at the folder holding the transcoders "
                              f"({MANIFEST}, or circuit-tracer's {CONFIG} + layer files, or layer_i/params.npz)")
    if not path.is_dir():
        raise TranscoderError(f"{path} does not exist; name a transcoder folder, or 'bundled' / 'bundled-llama' "
                              "for the shipped ones")
    if (path / MANIFEST).is_file():
        return "circuitwise"
    if (path / CONFIG).is_file():
        cfg = _read_config(path)
        kind = cfg.get("model_kind")
        if kind == "cross_layer_transcoder" or (kind is None and (path / "W_enc_0.safetensors").is_file()):
            return "circuit-tracer-clt"
        return "circuit-tracer"
    if _gemma_scope_files(path, strict=False):
        return "gemma-scope"
    pickles = [p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
    hint = f" It holds pickled files ({', '.join(pickles[:3])}), which circuitwise never loads." if pickles else ""
    raise TranscoderError(f"{path} holds no transcoders circuitwise can read: expected {MANIFEST} (circuitwise), "
                          f"{CONFIG} + layer_i.safetensors or W_enc_i/W_dec_i.safetensors (circuit-tracer), or "
                          f"layer_i/params.npz (Gemma Scope).{hint}")


def resolve(path: str | os.PathLike[str]) -> Path:
    """A transcoder folder from a path or a shipped set's name (``bundled``, ``bundled-llama``)."""
    p = Path(path)
    if isinstance(path, str) and path in BUNDLED and not p.exists():
        folder = BUNDLED_DIR / BUNDLED[path]
        if not (folder / MANIFEST).is_file():
            raise TranscoderError(f"the shipped transcoders for {path!r} are missing from this installation "
                                  f"({folder}); reinstall circuitwise, or train them with "
                                  f"`circuitwise transcoders train {path}`")
        return folder
    return p


def load_transcoders(path: str | os.PathLike[str], *, layout: Layout | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TranscoderSet:
    """Read a transcoder set from ``path`` (a folder of any :data:`Layout`, or ``"bundled"``/``"bundled-llama"``)."""
    folder = resolve(path)
    found = detect_layout(folder)
    if layout is not None and layout != found:
        raise TranscoderError(f"{folder} is in the {found!r} layout, not {layout!r}; leave the layout out to read it")
    reader = {"circuitwise": _read_circuitwise, "circuit-tracer": _read_circuit_tracer,
              "circuit-tracer-clt": _read_clt, "gemma-scope": _read_gemma_scope_folder}[found]
    ts = reader(folder)
    return ts.to(device, dtype) if (device is not None or dtype is not None) else ts


def _read_circuitwise(folder: Path) -> TranscoderSet:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TranscoderError(f"{folder / MANIFEST} is not readable JSON ({e}); re-save the transcoders") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TranscoderError(f"{folder / MANIFEST} is not a circuitwise transcoder manifest (format "
                              f"{manifest.get('format') if isinstance(manifest, dict) else None!r}); re-save it")
    if manifest.get("version") != VERSION:
        raise TranscoderError(f"{folder / MANIFEST} is version {manifest.get('version')!r}; this circuitwise reads "
                              f"version {VERSION}: upgrade circuitwise or re-save the transcoders with this one")
    weights = folder / WEIGHTS
    if weights.is_file() and manifest.get("sha256") and _sha256(weights) != manifest["sha256"]:
        raise TranscoderError(f"{weights} does not match the checksum in {MANIFEST} (changed or truncated); "
                              "copy the folder again or re-save the transcoders")
    tensors = _load_tensors(weights)
    out = []
    for i, spec in enumerate(manifest.get("layers") or []):
        def get(name: str, i: int = i) -> torch.Tensor:
            return _key(tensors, f"layers.{i}.{name}", weights)

        opt = {name: get(name) for name in ("threshold", "W_skip") if f"layers.{i}.{name}" in tensors}
        out.append(Transcoder(i, get("W_enc"), get("b_enc"), get("W_dec"), get("b_dec"),
                              activation=spec.get("activation", "relu"), k=spec.get("k"),
                              threshold=opt.get("threshold"), W_skip=opt.get("W_skip"),
                              site=spec.get("site", "mlp_in"), meta=dict(spec.get("meta") or {})))
    if not out:
        raise TranscoderError(f"{folder / MANIFEST} lists no layers; re-save the transcoders")
    return TranscoderSet(tuple(out), model=manifest.get("model", ""), fingerprint=manifest.get("fingerprint"),
                         meta=dict(manifest.get("meta") or {}))


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load((folder / CONFIG).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TranscoderError(f"{folder / CONFIG} is not readable YAML ({e}); fix or re-save it") from e
    if not isinstance(cfg, dict):
        raise TranscoderError(f"{folder / CONFIG} is not a circuit-tracer config (a mapping of settings); fix it")
    return cfg


def _site(cfg: dict[str, Any], folder: Path) -> Site:
    hook = cfg.get("feature_input_hook", "hook_resid_mid")
    if hook not in _INPUT_HOOKS:
        raise TranscoderError(f"{folder / CONFIG}: feature_input_hook {hook!r} is not one circuitwise can read from "
                              f"(it reads {', '.join(sorted(_INPUT_HOOKS))})")
    out = cfg.get("feature_output_hook", "hook_mlp_out")
    if out not in _OUTPUT_HOOKS:
        raise TranscoderError(f"{folder / CONFIG}: feature_output_hook {out!r} is not the MLP's output; circuitwise "
                              f"replaces MLPs ({' or '.join(_OUTPUT_HOOKS)})")
    return _INPUT_HOOKS[hook]


def _activation(cfg: dict[str, Any], has_threshold: bool, k_file: int | None,
                where: Path) -> tuple[Activation, int | None]:
    act = cfg.get("activation")
    k = cfg.get("k", k_file)
    if act == "topk" or (act is None and k_file is not None):
        if not isinstance(k, int) or k <= 0:
            raise TranscoderError(f"{where}: a topk transcoder needs k (a positive integer) in {CONFIG} or the files")
        return "topk", k
    if has_threshold and act in (None, "jumprelu", "jump_relu"):
        return "jumprelu", None
    if act in (None, "relu"):
        return "relu", None
    raise TranscoderError(f"{where}: activation {act!r} is not one circuitwise knows (relu, topk, jumprelu)")


def _as_in_by_n(w: torch.Tensor, n: int, what: str, where: Path) -> torch.Tensor:
    """circuit-tracer stores ``[n, d]`` (``F.linear``); older files ``[d, n]``: return ``[d, n]``."""
    if w.dim() != 2 or n not in w.shape:
        raise TranscoderError(f"{where}: {what} is {tuple(w.shape)}, which has no side of the {n} features that "
                              "b_enc has; the file is damaged or of another layout")
    return w.T.contiguous() if w.shape[0] == n else w


def _as_n_by_out(w: torch.Tensor, n: int, d_out: int, where: Path) -> torch.Tensor:
    if tuple(w.shape) == (n, d_out):
        return w
    if tuple(w.shape) == (d_out, n):  # safety-research/circuit-tracer's first files stored W_dec [d_model, n]
        return w.T.contiguous()
    raise TranscoderError(f"{where}: W_dec is {tuple(w.shape)}; expected ({n}, {d_out}) from b_enc and b_dec")


def _read_ct_layer(path: Path, layer: int, cfg: dict[str, Any], site: Site, folder: Path) -> Transcoder:
    if path.suffix.lower() == ".npz":
        return _read_gemma_scope(path, layer, site=site)
    _refuse_pickle(path)
    t = _load_tensors(path)
    b_enc, b_dec = _key(t, "b_enc", path), _key(t, "b_dec", path)
    n, d_out = b_enc.shape[-1], b_dec.shape[-1]
    W_enc = _as_in_by_n(_key(t, "W_enc", path), n, "W_enc", path)
    W_dec = _as_n_by_out(_key(t, "W_dec", path), n, d_out, path)
    threshold = t.get("activation_function.threshold", t.get("threshold"))
    k_file = int(t["k"].item()) if "k" in t else None
    act, k = _activation(cfg, threshold is not None, k_file, path)
    W_skip = t["W_skip"].float().T.contiguous() if "W_skip" in t else None  # stored [d_out, d_in]
    return Transcoder(layer, W_enc, b_enc.reshape(n), W_dec, b_dec.reshape(d_out), activation=act, k=k,
                      threshold=None if threshold is None or act != "jumprelu" else threshold.float().reshape(n),
                      W_skip=W_skip, site=site)


def _extras(cfg: dict[str, Any]) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
    cw = cfg.get("circuitwise")
    if not isinstance(cw, dict):
        cw = {}
    return str(cfg.get("model_name") or ""), cw.get("fingerprint"), dict(cw.get("meta") or {})


def _read_circuit_tracer(folder: Path) -> TranscoderSet:
    cfg = _read_config(folder)
    site = _site(cfg, folder)
    listed = cfg.get("transcoders")
    if listed:
        if not isinstance(listed, list):
            raise TranscoderError(f"{folder / CONFIG}: 'transcoders' is a list of one file per layer; fix it")
        paths = []
        for entry in listed:
            raw = entry.get("filepath") if isinstance(entry, dict) else entry  # safety-research's older entries
            if not isinstance(raw, str):
                raise TranscoderError(f"{folder / CONFIG}: transcoder entry {entry!r} names no file")
            if raw.startswith("hf://"):
                raise TranscoderError(f"{folder / CONFIG} names {raw}, on the Hugging Face Hub, which this machine "
                                      "cannot reach; download the files, and list their local paths instead")
            p = Path(raw)
            paths.append(p if p.is_absolute() else folder / p)
    else:
        paths = _contiguous(_layer_files(folder, r"layer_(\d+)\.safetensors"), folder, "layer_i.safetensors")
    model, fp, meta = _extras(cfg)
    return TranscoderSet(tuple(_read_ct_layer(p, i, cfg, site, folder) for i, p in enumerate(paths)),
                         model=model, fingerprint=fp, meta=meta)


def _read_clt(folder: Path) -> TranscoderSet:
    cfg = _read_config(folder)
    site = _site(cfg, folder)
    enc = _contiguous(_layer_files(folder, r"W_enc_(\d+)\.safetensors"), folder, "W_enc_i.safetensors")
    n_layers = len(enc)
    out = []
    for i, path in enumerate(enc):
        t = _load_tensors(path)
        dec_path = folder / f"W_dec_{i}.safetensors"
        W_dec = _key(_load_tensors(dec_path), f"W_dec_{i}", dec_path)
        b_enc, b_dec = _key(t, f"b_enc_{i}", path), _key(t, f"b_dec_{i}", path)
        n, d_out = b_enc.shape[-1], b_dec.shape[-1]
        W_enc = _as_in_by_n(_key(t, f"W_enc_{i}", path), n, f"W_enc_{i}", path)
        if tuple(W_dec.shape) != (n, n_layers - i, d_out):
            raise TranscoderError(f"{dec_path}: W_dec_{i} is {tuple(W_dec.shape)}; expected "
                                  f"{(n, n_layers - i, d_out)} for layer {i} of {n_layers} (is a W_enc or W_dec "
                                  "file missing or from another set?)")
        threshold = t.get(f"threshold_{i}")
        act, k = _activation(cfg, threshold is not None, None, path)
        # circuit-tracer keeps one b_dec per output layer, added once: it is layer i's own slot 0 here.
        b = torch.zeros(n_layers - i, d_out)
        b[0] = b_dec.reshape(d_out)
        skip = t.get(f"W_skip_{i}")
        thr = None if threshold is None or act != "jumprelu" else threshold.float().reshape(n)
        out.append(Transcoder(i, W_enc, b_enc.reshape(n), W_dec, b, activation=act, k=k, threshold=thr,
                              W_skip=None if skip is None else skip.float(), site=site))
    model, fp, meta = _extras(cfg)
    return TranscoderSet(tuple(out), model=model, fingerprint=fp, meta=meta)


def _gemma_scope_files(folder: Path, *, strict: bool = True) -> list[Path]:
    layers = _layer_files(folder, r"layer_(\d+)")
    found: dict[int, Path] = {}
    for i, d in layers.items():
        if not d.is_dir():
            continue
        hits = sorted(d.rglob("params.npz"))
        if len(hits) > 1 and strict:
            names = ", ".join(str(h.relative_to(folder)) for h in hits[:4])
            raise TranscoderError(f"{d} holds {len(hits)} params.npz files ({names}…); "
                                  f"choose one per layer: list them in a circuit-tracer {CONFIG} "
                                  "(transcoders: [path, …]) and load that folder")
        if hits:
            found[i] = hits[0]
    if not strict:
        return list(found.values())
    return _contiguous(found, folder, "layer_i/params.npz")


def _read_gemma_scope(path: Path, layer: int, *, site: Site = "mlp_in") -> Transcoder:
    if not path.is_file():
        raise TranscoderError(f"{path} is missing; download it, or fix the path")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:  # an object array would need a pickle
        raise TranscoderError(f"{path} holds pickled (object) arrays, which circuitwise never loads; save plain "
                              "float arrays (np.savez) instead") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise TranscoderError(f"{path} is not a readable .npz file ({e}); re-download it") from e
    need = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise TranscoderError(f"{path} lacks {missing} (it has {sorted(arrays)}); a Gemma Scope transcoder has "
                              f"{', '.join(need)}")
    t = {k: torch.from_numpy(np.asarray(arrays[k], dtype=np.float32)) for k in need}
    n = t["b_enc"].shape[-1]
    if t["W_enc"].dim() != 2 or t["W_enc"].shape[1] != n:
        raise TranscoderError(f"{path}: W_enc is {tuple(t['W_enc'].shape)}; Gemma Scope's is [d_model, {n}]")
    return Transcoder(layer, t["W_enc"], t["b_enc"], t["W_dec"], t["b_dec"], activation="jumprelu",
                      threshold=t["threshold"].reshape(-1), site=site)


def _read_gemma_scope_folder(folder: Path) -> TranscoderSet:
    paths = _gemma_scope_files(folder)
    return TranscoderSet(tuple(_read_gemma_scope(p, i) for i, p in enumerate(paths)))


# -- writing ---------------------------------------------------------------------------------------

def _names(ts: TranscoderSet, layout: Layout) -> set[str]:
    n = len(ts)
    if layout == "circuitwise":
        return {WEIGHTS, MANIFEST, CARD_MD, CARD_JSON}
    if layout == "circuit-tracer":
        return {CONFIG, *(f"layer_{i}.safetensors" for i in range(n))}
    if layout == "circuit-tracer-clt":
        return {CONFIG, *(f"W_enc_{i}.safetensors" for i in range(n)), *(f"W_dec_{i}.safetensors" for i in range(n))}
    return {f"layer_{i}" for i in range(n)}


def _prepare(ts: TranscoderSet, folder: Path, layout: Layout) -> None:
    if layout not in LAYOUTS:
        raise TranscoderError(f"unknown transcoder layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not len(ts):
        raise TranscoderError("the transcoder set is empty; there is nothing to save")
    sites = {t.site for t in ts.transcoders}
    if layout != "circuitwise" and len(sites) > 1:
        raise TranscoderError(f"{layout} keeps one input hook for all layers, but these transcoders read "
                              f"{sorted(sites)}; save them in the circuitwise layout")
    if layout == "circuit-tracer" and ts.cross_layer:
        raise TranscoderError("these are cross-layer transcoders; save them with layout 'circuit-tracer-clt'")
    if layout == "circuit-tracer-clt" and not ts.cross_layer:
        raise TranscoderError("these are per-layer transcoders; save them with layout 'circuit-tracer'")
    if layout == "gemma-scope":
        if ts.cross_layer:
            raise TranscoderError("Gemma Scope's layout holds per-layer transcoders only; use 'circuit-tracer-clt'")
        bad = [t.layer for t in ts.transcoders if t.W_skip is not None or t.activation == "topk" or t.site != "mlp_in"]
        if bad:
            raise TranscoderError(f"Gemma Scope's params.npz holds JumpReLU transcoders that read the MLP's input, "
                                  f"with no skip path; layer(s) {bad} are not: save them as 'circuit-tracer'")
    if folder.exists() and not folder.is_dir():
        raise TranscoderError(f"{folder} is a file; name a folder to write the transcoders into")
    if folder.is_dir():
        ours = _names(ts, layout)
        others = sorted(p.name for p in folder.iterdir() if p.name not in ours and not p.name.startswith("."))
        if others:
            raise TranscoderError(f"{folder} already holds other files ({', '.join(others[:5])}); write the "
                                  "transcoders into a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)


def save_transcoders(ts: TranscoderSet, path: str | os.PathLike[str], layout: Layout = "circuitwise") -> Path:
    """Write ``ts`` into the folder ``path`` in ``layout``; returns the folder."""
    folder = Path(path)
    _prepare(ts, folder, layout)
    ts = ts.to("cpu", torch.float32)
    {"circuitwise": _write_circuitwise, "circuit-tracer": _write_circuit_tracer,
     "circuit-tracer-clt": _write_clt, "gemma-scope": _write_gemma_scope}[layout](ts, folder)
    return folder


def _write_circuitwise(ts: TranscoderSet, folder: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    layers = []
    for t in ts.transcoders:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip"):
            v = getattr(t, name)
            if v is not None:
                tensors[f"layers.{t.layer}.{name}"] = v
        layers.append({"layer": t.layer, "activation": t.activation, "k": t.k, "site": t.site,
                       "n_features": t.n_features, "skip": t.W_skip is not None, "meta": t.meta})
    _save_tensors(tensors, folder / WEIGHTS)
    if ts.meta.get("card"):
        card = json.dumps({"model": ts.model, "card": ts.meta["card"], "training": ts.meta.get("training")},
                          indent=2, allow_nan=False)
        _atomic(folder / CARD_JSON, lambda p: _write_text(p, card + "\n"))
        page = card_markdown(ts)
        _atomic(folder / CARD_MD, lambda p: _write_text(p, page))
    manifest = {"format": FORMAT, "version": VERSION, "model": ts.model, "fingerprint": ts.fingerprint,
                "cross_layer": ts.cross_layer, "layers": layers, "meta": ts.meta, "sha256": _sha256(folder / WEIGHTS)}
    text = json.dumps(manifest, indent=2, allow_nan=False)
    _atomic(folder / MANIFEST, lambda p: _write_text(p, text + "\n"))  # last: the folder is whole once it exists


def _write_config(ts: TranscoderSet, folder: Path, kind: str) -> None:
    t0 = ts.transcoders[0]
    cfg: dict[str, Any] = {"model_name": ts.model, "model_kind": kind,
                           "feature_input_hook": _WRITE_INPUT_HOOK[t0.site], "feature_output_hook": "hook_mlp_out"}
    if t0.activation == "topk":
        cfg["activation"], cfg["k"] = "topk", t0.k
    elif t0.activation == "relu":
        cfg["activation"] = "relu"
    # JumpReLU: circuit-tracer reads it from the thresholds in the files when no activation is named.
    cfg["circuitwise"] = {"fingerprint": ts.fingerprint, "meta": ts.meta}
    text = yaml.safe_dump(cfg, sort_keys=False)
    _atomic(folder / CONFIG, lambda p: _write_text(p, text))


def _write_circuit_tracer(ts: TranscoderSet, folder: Path) -> None:
    ks = {t.k for t in ts.transcoders}
    acts = {t.activation for t in ts.transcoders}
    if len(acts) > 1 or len(ks) > 1:
        raise TranscoderError("circuit-tracer's config names one activation and k for every layer; these differ "
                              f"({sorted(acts)}, k {sorted(ks, key=str)}): save them in the circuitwise layout")
    for t in ts.transcoders:
        d: dict[str, torch.Tensor] = {"W_enc": t.W_enc.T, "W_dec": t.W_dec, "b_enc": t.b_enc, "b_dec": t.b_dec}
        if t.threshold is not None and t.activation == "jumprelu":
            d["activation_function.threshold"] = t.threshold
        # TopK's k goes in config.yaml only: circuit-tracer 0.5 loads each layer's tensors strictly, and an
        # extra `k` tensor makes its loader fail (bench/circuit_tracer_formats.py).
        if t.W_skip is not None:
            d["W_skip"] = t.W_skip.T
        _save_tensors(d, folder / f"layer_{t.layer}.safetensors")
    _write_config(ts, folder, "transcoder_set")


def _write_clt(ts: TranscoderSet, folder: Path) -> None:
    for t in ts.transcoders:
        i = t.layer
        enc: dict[str, torch.Tensor] = {f"W_enc_{i}": t.W_enc.T, f"b_enc_{i}": t.b_enc, f"b_dec_{i}": t.b_dec[0]}
        if t.threshold is not None and t.activation == "jumprelu":
            enc[f"threshold_{i}"] = t.threshold
        if t.W_skip is not None:
            enc[f"W_skip_{i}"] = t.W_skip
        _save_tensors(enc, folder / f"W_enc_{i}.safetensors")
        _save_tensors({f"W_dec_{i}": t.W_dec}, folder / f"W_dec_{i}.safetensors")
    _write_config(ts, folder, "cross_layer_transcoder")


def _write_gemma_scope(ts: TranscoderSet, folder: Path) -> None:
    for t in ts.transcoders:
        # ReLU is JumpReLU with thresholds 0 (pre · [pre > 0]).
        threshold = t.threshold if t.threshold is not None else torch.zeros(t.n_features)
        arrays = {"W_enc": t.W_enc, "W_dec": t.W_dec, "b_enc": t.b_enc, "b_dec": t.b_dec, "threshold": threshold}
        d = folder / f"layer_{t.layer}"
        d.mkdir(exist_ok=True)
        data = {k: v.numpy() for k, v in arrays.items()}

        def write(p: Path, data: dict[str, np.ndarray] = data) -> None:
            with open(p, "wb") as f:
                np.savez(f, **data)  # type: ignore[arg-type]

        _atomic(d / "params.npz", write)


# -- checking against a model ---------------------------------------------------------------------

def check_model(ts: TranscoderSet, model: Any, *, name: Any = None, allow_other: bool = False) -> str | None:
    """Raise :class:`TranscoderError` where ``ts`` does not fit ``model`` (layers, widths, or another model).

    The shapes are always checked. Where the set records a fingerprint it is compared too (the dtype
    aside: a float32 set runs on a bfloat16 model); ``allow_other`` turns that mismatch into the
    returned warning.
    """
    from circuitwise.models.fingerprint import differences, fingerprint

    cfg = model.cfg
    n_layers, d_model = int(cfg.n_layers), int(cfg.d_model)
    label = name or ts.model or "these transcoders"
    if len(ts) != n_layers:
        raise TranscoderError(f"{label} cover {len(ts)} layer(s) but the model has {n_layers}; load the transcoders "
                              "trained for this model (or train them: `circuitwise transcoders train`)")
    for t in ts.transcoders:
        d_in, d_out = t.W_enc.shape[0], t.W_dec.shape[-1]
        if d_in != d_model or d_out != d_model:
            raise TranscoderError(f"{label}: layer {t.layer} reads width {d_in} and writes {d_out}, but the model's "
                                  f"d_model is {d_model}; these transcoders belong to another model")
    if not ts.fingerprint:
        return None
    have, want = dict(ts.fingerprint), fingerprint(model)
    if have.get("dtype") != want.get("dtype"):
        for key in ("dtype", "weights_hash", "checkpoint_hash"):  # the hashes sample values in the model's dtype
            have.pop(key, None)
    diff = differences(have, want)
    if not diff:
        return None
    msg = (f"{label} were trained on another model ({ts.model!r}): {'; '.join(diff)} (recorded vs loaded). "
           "Load the model they were trained on (with the same processing), or train transcoders for this one")
    if allow_other:
        return msg
    raise TranscoderError(msg)


def card_markdown(ts: TranscoderSet) -> str:
    """The card as a short markdown page (numbers from ``ts.meta['card']``)."""
    card = ts.meta.get("card") or {}
    tr = ts.meta.get("training") or {}
    t0 = ts[0]
    kind = (f"{'cross-layer' if ts.cross_layer else 'per-layer'} {t0.activation}"
            + (f" (k={t0.k})" if t0.activation == "topk" else "") + (", skip" if t0.W_skip is not None else ""))
    lines = [f"# Transcoders for {ts.model or 'a model'}", "",
             f"{len(ts)} layers × {t0.n_features} features, {kind}, reading {t0.site}.", ""]
    if tr:
        lines += [f"Trained on {tr.get('tokens')} tokens ({tr.get('steps')} steps of {tr.get('batch_tokens')}), "
                  f"lr {tr.get('lr')}, seed {tr.get('seed')}, in {tr.get('seconds')} s.", ""]
    if card.get("heldout_tokens"):
        lines += [f"Held out: {card['heldout_tokens']} tokens ({card.get('heldout_rows')} rows).", ""]
    if card.get("fvu"):
        l0 = card.get("l0") or [float("nan")] * len(card["fvu"])
        lines += ["| layer | FVU | L0 |", "|---|---|---|"]
        lines += [f"| {l} | {f:.4f} | {z:.1f} |" for l, (f, z) in enumerate(zip(card["fvu"], l0, strict=True))] + [""]
    if "kl" in card or "top1_agreement" in card:
        lines += ["With every MLP replaced by its transcoders (no error terms):", ""]
        if "kl" in card:
            lines.append(f"- KL from the model's next-token distribution: {card['kl']:.4f} nats per token")
        if "top1_agreement" in card:
            lines.append(f"- top-1 agreement with the model: {100 * card['top1_agreement']:.1f}%")
        lines.append("")
    return "\n".join(lines)
