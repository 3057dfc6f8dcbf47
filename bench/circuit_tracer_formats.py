"""circuitwise's transcoder files and Neuronpedia graph JSON, checked against the real tools (issue 25).

circuit-tracer (PyPI ``circuit-tracer``, the safety-research/decoderesearch code) runs in its own
virtual environment, ``bench/.venvs/circuit-tracer`` (``torch==2.13.0`` first, then
``circuit-tracer`` and ``jsonschema``; it pins transformers ≤ 4.57.3 and TransformerLens 3), as a
subprocess of this script (``--worker``; the venv is made on first use); tensors go both ways as
safetensors files.

Transcoders, both directions, per-layer and cross-layer (CLT):

- ours → theirs: a circuitwise set saved with ``save_transcoders(..., layout="circuit-tracer")`` (or
  ``"circuit-tracer-clt"``) is read by circuit-tracer's own folder loader,
  ``circuit_tracer.utils.caching.load_transcoders_from_cache`` (config.yaml's ``model_kind`` picks
  ``load_transcoder_set`` or ``load_clt``); both sides encode the same random inputs and decode them
  (skip path included), and the script reports the largest absolute differences. Sets: the shipped
  ``bundled`` transcoders (TopK k=16 with skip), and random ReLU and JumpReLU sets with skip.
- theirs → ours: random ``SingleLayerTranscoder``s / a ``CrossLayerTranscoder`` made by circuit-tracer,
  written with its ``to_safetensors`` and a config.yaml of the keys its cache writer dumps, read by
  ``circuitwise.features.formats.load_transcoders``, compared the same way.

Where circuit-tracer cannot read a folder as written, the error is recorded, and (marked
``adapted``) what it takes to read it.

Neuronpedia: ``circuitwise graph ... --out DIR``'s ``neuronpedia.json`` is validated with
``jsonschema`` against Neuronpedia's published graph schema
(hijohnnylin/neuronpedia ``apps/webapp/app/api/graph/graph-schema.json``, a copy expected at
``bench/.venvs/neuronpedia-graph-schema.json``); so is a graph JSON written by circuit-tracer's own
``create_graph_files`` for a tiny random GPT-2-style model (the bundled model's tokenizer, random
ReLU transcoders). Results: ``bench/results/circuit-tracer-formats-<date>.json``; figures in
bench/README.md. Run from the repository root (about a minute on 2 shared cores):

    PYTHONPATH=/work/main /work/main/.venv/bin/python bench/circuit_tracer_formats.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "bench" / ".venvs" / "circuit-tracer"
SCHEMA = ROOT / "bench" / ".venvs" / "neuronpedia-graph-schema.json"
PROMPT = "A tortoise is old, but a kitten is"
N_POS = 7
SEED = 0


# -- helpers shared by both sides -------------------------------------------------------------------

def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


# -- circuit-tracer's side (runs in its venv; never imports circuitwise) ----------------------------

def _ct_outputs(obj: Any, x: torch.Tensor, clt: bool) -> dict[str, torch.Tensor]:
    """circuit-tracer's feature activations and reconstructions ``[n_layers, n_pos, …]`` of ``x``."""
    with torch.no_grad():
        if clt:
            acts = obj.encode(x)
            recon = obj.decode(acts.to_sparse(), x)
            return {"acts": acts, "recon": recon}
        acts = torch.stack([t.encode(x[i]) for i, t in enumerate(obj)])
        recon = torch.stack([t.decode(acts[i], x[i]) for i, t in enumerate(obj)])
        return {"acts": acts, "recon": recon}


def _worker_load(folder: Path, inputs: Path, out: Path) -> dict[str, Any]:
    """Read ``folder`` with circuit-tracer's own folder loader and run it on ``inputs``."""
    import yaml
    from circuit_tracer.utils.caching import load_transcoders_from_cache

    x = load_file(str(inputs))["x"]
    report: dict[str, Any] = {"config": yaml.safe_load((folder / "config.yaml").read_text())}
    # load_transcoders_from_cache(ref, cache_dir) reads cache_dir/ref: config.yaml + the layer files.
    try:
        obj, _ = load_transcoders_from_cache(folder.name, cache_dir=folder.parent, device=torch.device("cpu"),
                                             dtype=torch.float32, lazy_encoder=False, lazy_decoder=False)
    except Exception as e:  # noqa: BLE001 - the failure is the finding
        report["load_error"] = f"{type(e).__name__}: {e}"
        return report
    clt = report["config"].get("model_kind") == "cross_layer_transcoder"
    report["type"] = type(obj).__name__
    if clt:
        fn = obj.activation_function
        report["activation"] = type(fn).__name__ if isinstance(fn, torch.nn.Module) else fn.__name__
        report["skip_loaded"] = obj.W_skip is not None
    else:
        report["activation"] = [getattr(t.activation_function, "__name__", type(t.activation_function).__name__)
                                for t in obj]
        report["skip_loaded"] = [t.W_skip is not None for t in obj]
    _save(_ct_outputs(obj, x, clt), out)
    return report


def _worker_load_adapted_topk(folder: Path, inputs: Path, out: Path, k: int) -> dict[str, Any]:
    """The per-layer TopK files read the way circuit-tracer can: its loader without the ``k`` tensor,
    then its own ``TopK`` module as the activation (its loader builds only ReLU/JumpReLU)."""
    import shutil

    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.transcoder.single_layer_transcoder import load_relu_transcoder

    x = load_file(str(inputs))["x"]
    tmp = Path(tempfile.mkdtemp())
    try:
        tcs = []
        for i in range(x.shape[0]):
            t = load_file(str(folder / f"layer_{i}.safetensors"))
            t.pop("k", None)
            save_file(t, str(tmp / f"layer_{i}.safetensors"))
            tc = load_relu_transcoder(str(tmp / f"layer_{i}.safetensors"), i, device=torch.device("cpu"),
                                      dtype=torch.float32, lazy_encoder=False, lazy_decoder=False)
            tc.activation_function = TopK(k)
            tcs.append(tc)
        _save(_ct_outputs(tcs, x, clt=False), out)
    finally:
        shutil.rmtree(tmp)
    return {"adapted": "dropped the 'k' tensor; activation_function = circuit_tracer TopK(k)"}


def _worker_make(folder: Path, kind: str, n_layers: int, d_model: int, n_feat: int, inputs: Path,
                 out: Path) -> dict[str, Any]:
    """A random set made and saved by circuit-tracer's own classes, and its outputs on ``inputs``."""
    import yaml
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.cross_layer_transcoder import CrossLayerTranscoder
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet

    g = torch.Generator().manual_seed(SEED + 1)

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    x = load_file(str(inputs))["x"]
    folder.mkdir(parents=True, exist_ok=True)
    jump = kind.endswith("jumprelu")
    with torch.no_grad():
        if kind.startswith("clt"):
            act = "jump_relu" if jump else "relu"
            clt = CrossLayerTranscoder(n_layers, n_feat, d_model, activation_function=act, skip_connection=True,
                                       lazy_decoder=False, device=torch.device("cpu"), dtype=torch.float32)
            clt.W_enc.copy_(rnd(n_layers, n_feat, d_model, scale=d_model ** -0.5))
            clt.b_enc.copy_(rnd(n_layers, n_feat, scale=0.1))
            clt.b_dec.copy_(rnd(n_layers, d_model, scale=0.1))
            for i in range(n_layers):
                clt.W_dec[i].copy_(rnd(n_feat, n_layers - i, d_model, scale=n_feat ** -0.5))
            clt.W_skip.copy_(rnd(n_layers, d_model, d_model, scale=d_model ** -0.5))
            if jump:
                clt.activation_function.threshold.copy_(rnd(n_layers, 1, n_feat, scale=0.3).abs())
            clt.to_safetensors(str(folder))
            obj: Any = clt
            model_kind = "cross_layer_transcoder"
        else:
            tcs = {}
            for i in range(n_layers):
                fn: Any = JumpReLU(rnd(n_feat, scale=0.3).abs(), 0.1) if jump else torch.nn.functional.relu
                t = SingleLayerTranscoder(d_model, n_feat, fn, i, skip_connection=True, device=torch.device("cpu"),
                                          dtype=torch.float32)
                t.W_enc.copy_(rnd(n_feat, d_model, scale=d_model ** -0.5))
                t.W_dec.copy_(rnd(n_feat, d_model, scale=n_feat ** -0.5))
                t.b_enc.copy_(rnd(n_feat, scale=0.1))
                t.b_dec.copy_(rnd(d_model, scale=0.1))
                t.W_skip.copy_(rnd(d_model, d_model, scale=d_model ** -0.5))
                tcs[i] = t
            obj = TranscoderSet(tcs, feature_input_hook="hook_resid_mid", feature_output_hook="hook_mlp_out",
                                scan="circuit-tracer-random")
            obj.to_safetensors(str(folder))
            model_kind = "transcoder_set"
    # The keys circuit-tracer's cache writer dumps (save_transcoders_to_cache: the hub config less
    # transcoders/repo_id/subfolder, plus scan and revision), with yaml.dump as it does.
    cfg = {"model_kind": model_kind, "model_name": "tiny-random", "feature_input_hook": "hook_resid_mid",
           "feature_output_hook": "hook_mlp_out", "scan": "circuit-tracer-random", "revision": None}
    (folder / "config.yaml").write_text(yaml.dump(cfg))
    # What the files hold, as circuit-tracer reads them back: its CLT to_safetensors writes no W_skip,
    # so the reloaded CLT has no skip path although the one in memory had.
    from circuit_tracer.utils.caching import load_transcoders_from_cache

    clt_kind = kind.startswith("clt")
    back, _ = load_transcoders_from_cache(folder.name, cache_dir=folder.parent, device=torch.device("cpu"),
                                          dtype=torch.float32, lazy_encoder=False, lazy_decoder=False)
    mem, disk = _ct_outputs(obj, x, clt=clt_kind), _ct_outputs(back, x, clt=clt_kind)
    _save(disk, out)
    return {"files": sorted(p.name for p in folder.iterdir()),
            "circuit_tracer_own_roundtrip": {"acts_max_abs_diff": _maxdiff(mem["acts"], disk["acts"]),
                                             "recon_max_abs_diff": _maxdiff(mem["recon"], disk["recon"]),
                                             "skip_in_memory": obj.W_skip is not None if clt_kind else True,
                                             "skip_after_reload": back.W_skip is not None if clt_kind else
                                             all(t.W_skip is not None for t in back)}}


def _worker_validate(schema_path: Path, graphs: list[Path]) -> dict[str, Any]:
    import jsonschema

    schema = json.loads(schema_path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    v = cls(schema)
    out = {}
    for g in graphs:
        doc = json.loads(g.read_text())
        errors = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
        out[str(g)] = {"valid": not errors, "n_errors": len(errors),
                       "errors": [{"path": "/".join(map(str, e.absolute_path)), "message": e.message[:300]}
                                  for e in errors[:20]],
                       "n_nodes": len(doc.get("nodes", [])), "n_links": len(doc.get("links", []))}
    return out


def _worker_ct_graph(tokenizer_dir: Path, out_dir: Path) -> dict[str, Any]:
    """circuit-tracer's own graph JSON: attribute() + create_graph_files() on a tiny random model."""
    from circuit_tracer import attribute
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet
    from circuit_tracer.utils.create_graph_files import create_graph_files
    from transformer_lens import HookedTransformerConfig
    from transformers import AutoTokenizer

    torch.manual_seed(SEED)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    cfg = HookedTransformerConfig(n_layers=2, d_model=64, n_ctx=64, d_head=16, n_heads=4, d_mlp=128,
                                  act_fn="gelu_new", d_vocab=len(tok), normalization_type="LN",
                                  tokenizer_name=str(tokenizer_dir), device="cpu", dtype=torch.float32)
    tcs = {}
    for i in range(cfg.n_layers):
        t = SingleLayerTranscoder(64, 256, torch.nn.functional.relu, i, device=torch.device("cpu"),
                                  dtype=torch.float32)
        with torch.no_grad():
            t.W_enc.copy_(torch.randn(256, 64) / 8)
            t.W_dec.copy_(torch.randn(256, 64) / 16)
            t.b_enc.copy_(torch.randn(256) * 0.1)
        tcs[i] = t
    ts = TranscoderSet(tcs, feature_input_hook="ln2.hook_normalized", feature_output_hook="hook_mlp_out",
                       scan="tiny-random")
    model = TransformerLensReplacementModel.from_config(cfg, ts)
    # The bundled tokenizer's BOS is id 0, which circuit-tracer's ensure_tokenized skips as falsy
    # (next(filter(None, [bos, pad, eos, ...])) -> StopIteration): hand it ids that start with BOS.
    ids = torch.tensor([tok.bos_token_id, *tok(PROMPT)["input_ids"]])
    graph = attribute(ids, model, max_n_logits=5, batch_size=64, verbose=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    create_graph_files(graph, slug="ct-tiny", output_path=str(out_dir), scan="tiny-random")
    return {"file": str(out_dir / "ct-tiny.json"), "n_feature_nodes": int(graph.selected_features.numel())}


def worker(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("args", nargs="*")
    a = ap.parse_args(argv)
    p = [Path(s) for s in a.args]
    if a.task == "load":
        res = _worker_load(p[0], p[1], p[2])
    elif a.task == "load-topk":
        res = _worker_load_adapted_topk(p[0], p[1], p[2], int(a.args[3]))
    elif a.task == "make":
        res = _worker_make(p[0], a.args[1], int(a.args[2]), int(a.args[3]), int(a.args[4]), p[5], p[6])
    elif a.task == "validate":
        res = _worker_validate(p[0], p[1:])
    elif a.task == "ct-graph":
        res = _worker_ct_graph(p[0], p[1])
    else:
        raise SystemExit(f"unknown worker task {a.task}")
    print("RESULT " + json.dumps(res, default=str))


# -- circuitwise's side ------------------------------------------------------------------------------

def _call(*args: str, timeout: int = 600) -> dict[str, Any]:
    py = VENV / "bin" / "python"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": ""}
    r = subprocess.run([str(py), str(Path(__file__).resolve()), "--worker", *args], capture_output=True,
                       text=True, env=env, timeout=timeout)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    return {"worker_error": (r.stderr or r.stdout)[-3000:]}


def _cw_outputs(ts: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        acts = torch.stack([t.encode(x[i]) for i, t in enumerate(ts.transcoders)])
        recon = torch.stack([ts.mlp_out(list(x), i) for i in range(len(ts))])
    return {"acts": acts, "recon": recon}


def _compare(ours: dict[str, torch.Tensor], theirs_path: Path) -> dict[str, Any]:
    theirs = load_file(str(theirs_path))
    out: dict[str, Any] = {}
    for key in ("acts", "recon"):
        a, b = ours[key], theirs[key]
        if a.shape != b.shape:
            out[key] = f"shapes differ: circuitwise {tuple(a.shape)}, circuit-tracer {tuple(b.shape)}"
            continue
        out[f"{key}_max_abs_diff"] = _maxdiff(a, b)
        out[f"{key}_max_abs"] = float(a.abs().max())
    out["active_features_agree"] = bool(((ours["acts"] != 0) == (theirs["acts"] != 0)).all())
    return out


def _random_set(act: str, cross_layer: bool, n_layers: int = 3, d: int = 32, n: int = 96, k: int | None = None,
                b_shift: float = 0.0) -> Any:
    from circuitwise.features.transcoder import Transcoder, TranscoderSet

    g = torch.Generator().manual_seed(SEED + 2)
    out = []
    for i in range(n_layers):
        W_dec = torch.randn(n, n_layers - i, d, generator=g) / n ** 0.5 if cross_layer else \
            torch.randn(n, d, generator=g) / n ** 0.5
        b_dec = torch.randn(n_layers - i, d, generator=g) * 0.1 if cross_layer else torch.randn(d, generator=g) * 0.1
        thr = torch.rand(n, generator=g) * 0.3 if act == "jumprelu" else None
        out.append(Transcoder(i, torch.randn(d, n, generator=g) / d ** 0.5,
                              torch.randn(n, generator=g) * 0.1 + b_shift, W_dec, b_dec, activation=act, k=k,
                              threshold=thr,
                              W_skip=torch.randn(d, d, generator=g) / d ** 0.5, site="resid_mid"))
    return TranscoderSet(tuple(out), model="random")


def _inputs(n_layers: int, d: int, path: Path) -> torch.Tensor:
    x = torch.randn(n_layers, N_POS, d, generator=torch.Generator().manual_seed(SEED))
    _save({"x": x}, path)
    return x


def ours_to_theirs(tmp: Path) -> dict[str, Any]:
    from circuitwise.features.formats import load_transcoders, save_transcoders

    sets = {"bundled (topk k=16, skip)": (load_transcoders("bundled"), "circuit-tracer"),
            # b_enc shifted down: some positions' k-th largest pre-activation is negative, where
            # circuitwise's TopK writes 0 and circuit-tracer's TopK module keeps the negative value.
            "random topk k=8 + skip, b_enc - 1.5": (_random_set("topk", False, k=8, b_shift=-1.5), "circuit-tracer"),
            "random relu + skip": (_random_set("relu", False), "circuit-tracer"),
            "random jumprelu + skip": (_random_set("jumprelu", False), "circuit-tracer"),
            "random CLT relu + skip": (_random_set("relu", True), "circuit-tracer-clt"),
            "random CLT jumprelu + skip": (_random_set("jumprelu", True), "circuit-tracer-clt"),
            "random CLT jumprelu, no skip": (_drop_skip(_random_set("jumprelu", True)), "circuit-tracer-clt")}
    res: dict[str, Any] = {}
    for i, (name, (ts, layout)) in enumerate(sets.items()):
        folder = tmp / f"ours{i}"
        save_transcoders(ts, folder, layout=layout)  # type: ignore[arg-type]
        x = _inputs(len(ts), ts[0].W_enc.shape[0], tmp / f"x{i}.safetensors")
        ours = _cw_outputs(ts, x)
        r = _call("load", str(folder), str(tmp / f"x{i}.safetensors"), str(tmp / f"ct{i}.safetensors"))
        entry: dict[str, Any] = {"layout": layout, "files": sorted(p.name for p in folder.iterdir()), **r}
        if "load_error" not in r and "worker_error" not in r:
            entry["compare"] = _compare(ours, tmp / f"ct{i}.safetensors")
            if layout == "circuit-tracer-clt" and ts[0].W_skip is not None:
                # circuit-tracer's CLT loader never reads W_skip_i: compare against ours without it.
                entry["compare_without_our_skip"] = _compare(_cw_outputs(_drop_skip(ts), x),
                                                             tmp / f"ct{i}.safetensors")
        if ts[0].activation == "topk":
            a = _call("load-topk", str(folder), str(tmp / f"x{i}.safetensors"), str(tmp / f"cta{i}.safetensors"),
                      str(ts[0].k))
            entry["adapted"] = a
            if "worker_error" not in a:
                entry["adapted"]["compare"] = _compare(ours, tmp / f"cta{i}.safetensors")
                pre = torch.stack([t.pre(x[j]) for j, t in enumerate(ts.transcoders)])
                kth = pre.topk(ts[0].k, dim=-1).values[..., -1]
                entry["adapted"]["positions_with_a_negative_topk_preactivation"] = int((kth < 0).sum())
                entry["adapted"]["positions"] = int(kth.numel())
        res[name] = entry
        print(f"ours→theirs {name}: {json.dumps(entry.get('compare') or entry.get('load_error'))}", flush=True)
    return res


def _drop_skip(ts: Any) -> Any:
    import dataclasses

    from circuitwise.features.transcoder import TranscoderSet

    return TranscoderSet(tuple(dataclasses.replace(t, W_skip=None) for t in ts.transcoders), model=ts.model)


def theirs_to_ours(tmp: Path) -> dict[str, Any]:
    from circuitwise.features.formats import detect_layout, load_transcoders

    res: dict[str, Any] = {}
    n_layers, d, n = 3, 32, 96
    for kind in ("relu", "jumprelu", "clt-relu", "clt-jumprelu"):
        folder = tmp / f"theirs-{kind}"
        x = _inputs(n_layers, d, tmp / f"tx-{kind}.safetensors")
        r = _call("make", str(folder), kind, str(n_layers), str(d), str(n), str(tmp / f"tx-{kind}.safetensors"),
                  str(tmp / f"tct-{kind}.safetensors"))
        entry: dict[str, Any] = dict(r)
        if "worker_error" not in r:
            try:
                ts = load_transcoders(folder)
                entry.update(layout=detect_layout(folder), activation=ts[0].activation, site=ts[0].site,
                             skip=ts[0].W_skip is not None, compare=_compare(_cw_outputs(ts, x),
                                                                             tmp / f"tct-{kind}.safetensors"))
            except Exception as e:  # noqa: BLE001 - the failure is the finding
                entry["load_error"] = f"{type(e).__name__}: {e}"
        res[kind] = entry
        print(f"theirs→ours {kind}: {json.dumps(entry.get('compare') or entry.get('load_error'))}", flush=True)
    return res


def neuronpedia(tmp: Path) -> dict[str, Any]:
    if not SCHEMA.is_file():
        return {"error": f"{SCHEMA} is missing: copy hijohnnylin/neuronpedia's apps/webapp/app/api/graph/"
                         "graph-schema.json there"}
    out_dir = tmp / "cw-graph"
    cli = Path(sys.executable).parent / "circuitwise"
    r = subprocess.run([str(cli), "graph", PROMPT, "--model", "bundled", "--transcoders", "bundled",
                        "--out", str(out_dir)], capture_output=True, text=True, timeout=900)
    res: dict[str, Any] = {"circuitwise_cli_rc": r.returncode}
    graphs = []
    if (out_dir / "neuronpedia.json").is_file():
        graphs.append(out_dir / "neuronpedia.json")
    else:
        res["circuitwise_cli_error"] = (r.stderr or r.stdout)[-2000:]
    ct = _call("ct-graph", str(ROOT / "src" / "circuitwise" / "models" / "bundled"), str(tmp / "ct-graph"))
    res["circuit_tracer_graph"] = ct
    if "file" in ct:
        graphs.append(Path(ct["file"]))
    v = _call("validate", str(SCHEMA), *map(str, graphs))
    res["validation"] = {("circuitwise neuronpedia.json" if "cw-graph" in k else "circuit-tracer create_graph_files"): e
                         for k, e in v.items()} if "worker_error" not in v else v
    # and circuitwise reading circuit-tracer's file back (its graph command draws such a file)
    if "file" in ct:
        nodes = json.loads(Path(ct["file"]).read_text())["nodes"]
        seen: dict[str, list[dict[str, Any]]] = {}
        for node in nodes:
            seen.setdefault(node["node_id"], []).append(
                {k: node.get(k) for k in ("layer", "feature", "ctx_idx", "feature_type", "jsNodeId")})
        res["circuit_tracer_repeated_node_ids"] = {k: v for k, v in seen.items() if len(v) > 1}
        r2 = subprocess.run([str(cli), "graph", ct["file"], "--out", str(tmp / "cw-from-ct")], capture_output=True,
                            text=True, timeout=600)
        res["circuitwise_reads_circuit_tracer_json"] = {"rc": r2.returncode,
                                                        "tail": (r2.stderr or r2.stdout)[-600:]}
    print(f"neuronpedia: {json.dumps(res.get('validation'))[:800]}", flush=True)
    return res


def main() -> None:
    if not (VENV / "bin" / "python").exists():
        # torch first and pinned: circuit-tracer's own torch spec would pull a multi-GB CUDA build.
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        for cmd in ([sys.executable, "-m", "venv", str(VENV)], [*pip, "torch==2.13.0"],
                    [*pip, "circuit-tracer", "jsonschema"]):
            if subprocess.run(cmd).returncode:
                raise SystemExit(f"making {VENV} failed at {' '.join(cmd)}; make it by hand (see the docstring)")
    torch.set_num_threads(1)
    version = _call_version()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {"date": dt.date.today().isoformat(), "circuit_tracer": version,
                  "ours_to_theirs": ours_to_theirs(tmp), "theirs_to_ours": theirs_to_ours(tmp),
                  "neuronpedia_schema": neuronpedia(tmp)}
    path = ROOT / "bench" / "results" / f"circuit-tracer-formats-{result['date']}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {path}")


def _call_version() -> str:
    code = ("import importlib.metadata as m; print(*(m.version(p) for p in "
            "('circuit-tracer', 'transformer-lens', 'torch', 'jsonschema')))")
    r = subprocess.run([str(VENV / "bin" / "python"), "-c", code], capture_output=True, text=True)
    return "circuit-tracer {} / transformer-lens {} / torch {} / jsonschema {}".format(*r.stdout.split()) \
        if r.returncode == 0 else r.stderr[-300:]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
