"""Train transcoders on a model's MLP inputs and outputs, captured through the bridge's hooks.

Per-layer (or, with ``cross_layer``, cross-layer) TopK or JumpReLU transcoders with a skip path,
trained with Adam on the normalised reconstruction error of every MLP's output at once.

Data: the corpus is tokenized once into rows (one text a row, cut to ``seq_len``), the last rows up
to ``heldout_tokens`` kept out for the card. Training walks the rest in a seeded order, a chunk of
``chunk_rows`` rows at a time: the model runs on the chunk, its MLPs' inputs and outputs are
shuffled (seeded by the chunk's index) and cut into mini-batches. Every step's data is a function of
the seed and the step alone, so a run resumed from a checkpoint recomputes its chunk and goes on
exactly as an uninterrupted run (same weights, bit for bit, on the same torch and thread count).

The card (:func:`transcoder_card`): each layer's fraction of variance unexplained (FVU) and mean
number of active features (L0) on the held-out rows, and, with every MLP replaced by its
transcoders (no error terms), the mean KL divergence from the model's next-token distribution and
how often both agree on the top token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from circuitwise.errors import ConfigError, Interrupted, TranscoderError
from circuitwise.features.transcoder import Site, Transcoder, TranscoderSet

log = logging.getLogger(__name__)

TrainActivation = Literal["topk", "jumprelu"]
CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"


@dataclass(frozen=True)
class TrainOptions:
    """How transcoders are trained (the CLI's flags derive from these defaults)."""

    width: int = 1024
    """Features per layer."""
    k: int = 16
    """Active features per token (TopK); JumpReLU's L0 is set by ``sparsity`` instead."""
    activation: TrainActivation = "topk"
    skip: bool = True
    """A linear skip path from input to output beside the features."""
    cross_layer: bool = False
    """Cross-layer transcoders: each layer's features write to its own and every later MLP output."""
    site: Site = "mlp_in"
    """What the transcoders read: the MLP's input (after its norm) or the residual before the norm."""
    tokens: int = 1_000_000
    """Training tokens (steps × batch_tokens); the corpus is repeated in a new order when shorter."""
    batch_tokens: int = 1024
    lr: float = 1e-3
    seed: int = 0
    seq_len: int = 128
    """Tokens per row at most (longer texts are cut)."""
    chunk_rows: int = 256
    """Rows the model runs on at a time; their tokens are shuffled and cut into mini-batches."""
    heldout_tokens: int = 16_384
    """Tokens kept out of training for the card."""
    aux_coefficient: float = 1 / 32
    """Weight of the dead-feature loss (features silent for ``dead_tokens`` learn the residual); 0: off."""
    dead_tokens: int = 50_000
    sparsity: float = 2e-3
    """JumpReLU's L0 penalty per active feature (relative to the normalised reconstruction error)."""
    bandwidth: float = 0.05
    """JumpReLU's straight-through kernel width."""
    checkpoint_every: int = 100
    """Steps between checkpoints (and at an interrupt)."""

    def check(self) -> None:
        if self.width < 1 or self.batch_tokens < 1 or self.tokens < 1 or self.seq_len < 2 or self.chunk_rows < 1:
            raise ConfigError("width, batch_tokens, tokens, chunk_rows must be ≥ 1 and seq_len ≥ 2")
        if self.activation == "topk" and not 0 < self.k <= self.width:
            raise ConfigError(f"k is {self.k}; a TopK transcoder needs 0 < k ≤ width ({self.width})")
        if self.activation not in ("topk", "jumprelu"):
            raise ConfigError(f"activation {self.activation!r}: choose topk or jumprelu")
        if self.site not in ("mlp_in", "resid_mid"):
            raise ConfigError(f"site {self.site!r}: choose mlp_in or resid_mid")
        # Written so that nan fails too (every comparison with nan is false); torch's Adam refused lr=nan
        # only after the model had loaded, with a traceback.
        numbers = (self.lr, self.aux_coefficient, self.sparsity, self.bandwidth)
        if not (all(math.isfinite(x) for x in numbers) and self.lr > 0 and self.bandwidth > 0
                and self.aux_coefficient >= 0 and self.sparsity >= 0):
            raise ConfigError("lr and bandwidth must be finite numbers > 0; aux_coefficient and sparsity finite "
                              f"and ≥ 0 (got lr={self.lr}, bandwidth={self.bandwidth}, "
                              f"aux_coefficient={self.aux_coefficient}, sparsity={self.sparsity})")


# -- hooks and data -------------------------------------------------------------------------------

def mlp_hooks(model: Any, site: Site) -> tuple[list[str], list[str]]:
    """The hooks each layer's transcoder reads and writes: ``(inputs, outputs)``.

    ``mlp_in`` is the MLP's own input (``blocks.l.mlp.hook_in``: after the pre-MLP norm, and the
    right norm's output in parallel attention + MLP blocks too); ``resid_mid`` is the residual before
    that norm (``blocks.l.hook_resid_mid``; the block's input, ``hook_resid_pre``, in parallel blocks).
    """
    names = set(model.hook_dict)
    n = int(model.cfg.n_layers)
    parallel = bool(getattr(model.cfg, "parallel_attn_mlp", False))
    if site == "mlp_in":
        ins = [f"blocks.{l}.mlp.hook_in" for l in range(n)]
    else:
        ins = [f"blocks.{l}.{'hook_resid_pre' if parallel else 'hook_resid_mid'}" for l in range(n)]
    outs = [f"blocks.{l}.hook_mlp_out" for l in range(n)]
    missing = [h for h in ins + outs if h not in names]
    if missing:
        raise TranscoderError(f"this model's bridge has no hook {missing[0]} (and {len(missing) - 1} more); "
                              "transcoders replace MLPs, which it does not expose there"
                              + ("; try site mlp_in" if site == "resid_mid" else ""))
    return ins, outs


def tokenize(model: Any, texts: Sequence[str], seq_len: int) -> list[torch.Tensor]:
    """One row of token ids per non-empty text (BOS as the model prepends it), cut to ``seq_len``."""
    rows = []
    for text in texts:
        if not text.strip():
            continue
        ids = model.to_tokens(text)[0, :seq_len].cpu()
        if ids.numel() >= 2:
            rows.append(ids)
    return rows


def split_heldout(rows: list[torch.Tensor], heldout_tokens: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(train, heldout)``: the last rows, up to ``heldout_tokens`` tokens (at least one row), held out."""
    held, total = 0, 0
    for r in reversed(rows):
        if total >= heldout_tokens and held:
            break
        held += 1
        total += r.numel()
    if held >= len(rows):
        raise ConfigError(f"the corpus has {len(rows)} rows ({sum(r.numel() for r in rows)} tokens), not enough "
                          f"for {heldout_tokens} held-out tokens and training: give a longer corpus, or fewer "
                          "held-out tokens (--heldout-tokens N; heldout_tokens= in Python).")
    return rows[:-held], rows[-held:]


def _batch(rows: Sequence[torch.Tensor], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the mask of real tokens; causal attention keeps real tokens from seeing pads."""
    width = max(r.numel() for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : r.numel()] = r
        mask[i, : r.numel()] = True
    return ids.to(device), mask.to(device)


@torch.no_grad()
def capture(model: Any, rows: Sequence[torch.Tensor], site: Site, *,
            batch_rows: int = 64) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every layer's transcoder inputs and MLP outputs at the rows' real tokens, float32 ``[tokens, d]``."""
    ins, outs = mlp_hooks(model, site)
    names = ins + outs
    got: dict[str, list[torch.Tensor]] = {h: [] for h in names}
    device = model.cfg.device
    store: dict[str, torch.Tensor] = {}

    def keep(name: str, t: torch.Tensor, hook: Any) -> None:
        # By the name asked for, not hook.name: a bridge's hook may be an alias of another point (OLMo 2's
        # blocks.L.mlp.hook_in is blocks.L.hook_resid_mid, its MLP having no norm in front), named by that one.
        store[name] = t

    for start in range(0, len(rows), batch_rows):
        ids, mask = _batch(rows[start:start + batch_rows], device)
        model.run_with_hooks(ids, fwd_hooks=[(h, partial(keep, h)) for h in names], return_type=None)
        for h in names:
            # A split model's later layers are on other devices than the mask (models.placement).
            got[h].append(store[h][mask.to(store[h].device)].float().cpu())
    return [torch.cat(got[h]) for h in ins], [torch.cat(got[h]) for h in outs]


# -- the trainable set ----------------------------------------------------------------------------

class _JumpReLU(torch.autograd.Function):
    """``pre · [pre > θ]``; θ's gradient through a rectangle kernel of width ε (Rajamanoharan et al. 2024)."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        kernel = ((pre - theta).abs() < eps / 2).to(pre) / eps
        return g * (pre > theta), (-(theta * kernel) * g).sum(dim=tuple(range(g.dim() - 1))), None


class _Step(torch.autograd.Function):
    """Heaviside ``[pre > θ]`` (the L0 count), with θ's gradient through the same kernel."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        pre, theta = ctx.saved_tensors
        kernel = ((pre - theta).abs() < ctx.eps / 2).to(pre) / ctx.eps
        return None, (-kernel * g).sum(dim=tuple(range(g.dim() - 1))), None


class _Trainable(torch.nn.Module):
    def __init__(self, n_layers: int, d: int, opts: TrainOptions, gen: torch.Generator):
        super().__init__()
        self.opts, self.n_layers = opts, n_layers
        n = opts.width
        enc, dec = [], []
        for l in range(n_layers):
            n_out = n_layers - l if opts.cross_layer else 1
            w = torch.randn(n, n_out, d, generator=gen)
            w = w / w.norm(dim=-1, keepdim=True)
            dec.append(torch.nn.Parameter(w * (0.1 / math.sqrt(n_out))))
            # Encoder starts as the own-layer decoder's transpose (TopK SAEs' init): features begin where they write.
            enc.append(torch.nn.Parameter(w[:, 0].T.clone().contiguous()))
        self.W_enc, self.W_dec = torch.nn.ParameterList(enc), torch.nn.ParameterList(dec)
        self.b_enc = torch.nn.Parameter(torch.zeros(n_layers, n))
        self.b_dec = torch.nn.Parameter(torch.zeros(n_layers, d))
        self.W_skip = torch.nn.Parameter(torch.zeros(n_layers, d, d)) if opts.skip else None
        # TopK's active features per layer in the current forward (its decode gathers them).
        self._sparse: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.log_theta = torch.nn.Parameter(torch.full((n_layers, n), math.log(0.1))) \
            if opts.activation == "jumprelu" else None

    def acts(self, l: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(activations, pre-activations, L0 per token)`` of layer ``l``'s features."""
        pre = x @ self.W_enc[l] + self.b_enc[l]
        if self.log_theta is not None:
            theta = self.log_theta[l].exp()
            eps = self.opts.bandwidth
            return _JumpReLU.apply(pre, theta, eps), pre, _Step.apply(pre, theta, eps).sum(-1)  # type: ignore[no-untyped-call]
        vals, idx = pre.topk(self.opts.k, dim=-1)
        a = torch.zeros_like(pre).scatter(-1, idx, vals.clamp(min=0))
        self._sparse[l] = (idx, vals.clamp(min=0))
        return a, pre, (a > 0).sum(-1).to(pre)

    def decode(self, l: int, out: int, a: torch.Tensor) -> torch.Tensor:
        """Layer ``l``'s features' write to output ``l + out`` (TopK's k active rows gathered, not a dense product)."""
        W = self.W_dec[l][:, out]
        if l in self._sparse:
            idx, vals = self._sparse[l]
            return F.embedding_bag(idx, W, per_sample_weights=vals, mode="sum")
        return a @ W

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor],
                                                         list[torch.Tensor]]:
        self._sparse = {}
        acts, pres, l0s = zip(*(self.acts(l, x) for l, x in enumerate(xs)), strict=True)
        preds = []
        for j in range(self.n_layers):
            y = self.b_dec[j] + (xs[j] @ self.W_skip[j] if self.W_skip is not None else 0)
            for l in range(j + 1) if self.opts.cross_layer else (j,):
                y = y + self.decode(l, j - l, acts[l])
            preds.append(y)
        return preds, list(acts), list(pres), list(l0s)

    def to_set(self, model_name: str, fingerprint: dict[str, Any] | None, meta: dict[str, Any]) -> TranscoderSet:
        out = []
        for l in range(self.n_layers):
            W_dec = self.W_dec[l].detach().clone()
            b_dec = self.b_dec[l].detach().clone()
            if self.opts.cross_layer:
                b = torch.zeros(self.n_layers - l, b_dec.shape[0])
                b[0] = b_dec
                b_dec = b
            else:
                W_dec = W_dec[:, 0].contiguous()
            out.append(Transcoder(
                l, self.W_enc[l].detach().clone(), self.b_enc[l].detach().clone(), W_dec, b_dec,
                activation=self.opts.activation, k=self.opts.k if self.opts.activation == "topk" else None,
                threshold=None if self.log_theta is None else self.log_theta[l].detach().exp(),
                W_skip=None if self.W_skip is None else self.W_skip[l].detach().clone(), site=self.opts.site))
        return TranscoderSet(tuple(out), model=model_name, fingerprint=fingerprint, meta=meta)


# -- the schedule of data -------------------------------------------------------------------------

@dataclass
class _Plan:
    """Which rows each chunk runs and how many steps it gives (from the rows' lengths alone)."""

    n_rows: int
    lengths: list[int]
    opts: TrainOptions
    chunks: list[tuple[list[int], int]] = field(default_factory=list)  # (row indices, steps)

    def rows_of(self, c: int) -> list[int]:
        out = []
        for p in range(c * self.opts.chunk_rows, (c + 1) * self.opts.chunk_rows):
            epoch, i = divmod(p, self.n_rows)
            perm = torch.randperm(self.n_rows, generator=torch.Generator().manual_seed(self.opts.seed * 7919 + epoch))
            out.append(int(perm[i]))
        return out

    def chunk(self, c: int) -> tuple[list[int], int]:
        while len(self.chunks) <= c:
            rows = self.rows_of(len(self.chunks))
            steps = sum(self.lengths[r] for r in rows) // self.opts.batch_tokens
            if steps == 0:
                raise ConfigError(f"a chunk of {self.opts.chunk_rows} rows holds fewer than batch_tokens "
                                  f"({self.opts.batch_tokens}) tokens; raise chunk_rows or lower batch_tokens")
            self.chunks.append((rows, steps))
        return self.chunks[c]

    def locate(self, step: int) -> tuple[int, int]:
        """``(chunk, step within it)`` of global step ``step``."""
        c = 0
        while True:
            _, steps = self.chunk(c)
            if step < steps:
                return c, step
            step -= steps
            c += 1


def _lr(opts: TrainOptions, step: int, total: int) -> float:
    warm = max(1, total // 20)
    decay_from = int(total * 0.8)
    if step < warm:
        return opts.lr * (step + 1) / warm
    if step >= decay_from:
        return opts.lr * max(0.0, (total - step) / max(1, total - decay_from))
    return opts.lr


# -- checkpoints ----------------------------------------------------------------------------------

def _key(opts: TrainOptions, fingerprint: dict[str, Any], rows: list[torch.Tensor]) -> str:
    h = hashlib.sha256(json.dumps({"options": asdict(opts), "model": fingerprint}, sort_keys=True,
                                  default=str).encode())
    for r in rows:
        h.update(r.numpy().tobytes())
        h.update(b"|")
    return h.hexdigest()


def _save_checkpoint(folder: Path, step: int, key: str, module: _Trainable, opt: torch.optim.Adam,
                     silent: torch.Tensor) -> None:
    from circuitwise.runfolder import atomic_write_json

    tensors = {f"p.{k}": v.detach().clone() for k, v in module.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            tensors[f"o.{i}.{name}"] = torch.as_tensor(v).clone()
    tensors["silent"] = silent.clone()
    tmp = folder / f".{CHECKPOINT}.tmp"
    save_file(tensors, str(tmp))
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(folder / CHECKPOINT)
    atomic_write_json(folder / CHECKPOINT_META, {"step": step, "key": key, "sha256": sha})


def _load_checkpoint(folder: Path, key: str, module: _Trainable,
                     opt: torch.optim.Adam) -> tuple[int, torch.Tensor] | None:
    meta_path, path = folder / CHECKPOINT_META, folder / CHECKPOINT
    if not (meta_path.is_file() and path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            raise TranscoderError(f"{folder} holds a training checkpoint of other options, model or corpus; "
                                  "resume with the same ones, or train into a new folder")
        if hashlib.sha256(path.read_bytes()).hexdigest() != meta.get("sha256"):
            log.warning("%s does not match its checksum; training starts again", path)
            return None
        t = load_file(str(path))
    except (json.JSONDecodeError, SafetensorError, OSError) as e:
        log.warning("the checkpoint in %s is not readable (%s); training starts again", folder, e)
        return None
    module.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("p.")})
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in t.items():
        if k.startswith("o."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    return int(meta["step"]), t["silent"]


# -- training -------------------------------------------------------------------------------------

Progress = Callable[[int, int, dict[str, float]], None]


def _init_skip(module: _Trainable, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
    """Start the skip path at the least-squares linear map and b_dec at the mean leftover (features learn the rest)."""
    with torch.no_grad():
        for l, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if module.W_skip is not None:
                xc, yc = x - x.mean(0), y - y.mean(0)
                gram = xc.T @ xc
                ridge = 1e-3 * gram.diagonal().mean() * torch.eye(gram.shape[0])
                module.W_skip[l] = torch.linalg.solve(gram + ridge, xc.T @ yc)
                module.b_dec[l] = y.mean(0) - x.mean(0) @ module.W_skip[l]
            else:
                module.b_dec[l] = y.mean(0)


def train_transcoders(model: Any, texts: Sequence[str], options: TrainOptions = TrainOptions(), *,
                      heldout: Sequence[str] | None = None, model_name: str = "",
                      checkpoint_dir: str | Path | None = None, progress: Progress | None = None) -> TranscoderSet:
    """Train a transcoder set for ``model`` on ``texts``; its card is in ``meta["card"]``.

    ``heldout`` texts are the card's; without them the last of ``texts`` (``heldout_tokens``) are.
    With ``checkpoint_dir`` a checkpoint is written every ``checkpoint_every`` steps and on Ctrl-C
    (then :class:`~circuitwise.errors.Interrupted` is raised), and a later call with the same
    model, texts and options resumes from it.
    """
    from circuitwise.models.fingerprint import fingerprint

    opts = options
    opts.check()
    t0 = time.time()
    n_layers, d = int(model.cfg.n_layers), int(model.cfg.d_model)
    mlp_hooks(model, opts.site)  # refuse a model without the hooks before any work
    rows = tokenize(model, texts, opts.seq_len)
    if heldout is None:
        train_rows, held_rows = split_heldout(rows, opts.heldout_tokens)
    else:
        train_rows, held_rows = rows, tokenize(model, heldout, opts.seq_len)
        if not train_rows or not held_rows:
            raise ConfigError("the training texts and the held-out texts each need at least one non-empty text")
        rows = rows + held_rows
    fp = fingerprint(model)
    key = _key(opts, fp, rows)
    total = max(1, opts.tokens // opts.batch_tokens)
    plan = _Plan(len(train_rows), [r.numel() for r in train_rows], opts)

    torch.manual_seed(opts.seed)
    module = _Trainable(n_layers, d, opts, torch.Generator().manual_seed(opts.seed))
    opt = torch.optim.Adam(module.parameters(), lr=opts.lr, betas=(0.9, 0.999))
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    start, silent = 0, torch.zeros(n_layers, opts.width)
    resumed = folder is not None and (got := _load_checkpoint(folder, key, module, opt)) is not None
    if resumed:
        start, silent = got  # type: ignore[misc]
    else:
        rows0, _ = plan.chunk(0)
        xs0, ys0 = capture(model, [train_rows[r] for r in rows0], opts.site)
        _init_skip(module, xs0, ys0)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    cur_chunk, data, perm = -1, None, None
    step = start
    info: dict[str, float] = {}
    try:
        while step < total:
            c, within = plan.locate(step)
            if c != cur_chunk:
                rows_c, _ = plan.chunk(c)
                data = capture(model, [train_rows[r] for r in rows_c], opts.site)
                shuffle = torch.Generator().manual_seed(opts.seed * 104729 + c)
                perm = torch.randperm(data[0][0].shape[0], generator=shuffle)
                var = [y.var(0).sum().clamp(min=1e-12) for y in data[1]]
                cur_chunk = c
            assert data is not None and perm is not None  # set above for the first step of every chunk
            idx = perm[within * opts.batch_tokens:(within + 1) * opts.batch_tokens]
            xs = [x[idx] for x in data[0]]
            ys = [y[idx] for y in data[1]]
            for g in opt.param_groups:
                g["lr"] = _lr(opts, step, total)
            preds, acts, pres, l0s = module(xs)
            fvus = [((y - p) ** 2).sum(-1).mean() / v for y, p, v in zip(ys, preds, var, strict=True)]
            loss = torch.stack(fvus).sum()
            if opts.activation == "jumprelu" and opts.sparsity:
                loss = loss + opts.sparsity * torch.stack([l0.mean() for l0 in l0s]).sum()
            fired = torch.stack([(a > 0).any(0) for a in acts])
            silent = torch.where(fired, torch.zeros_like(silent), silent + len(idx))
            if opts.aux_coefficient and opts.activation == "topk":
                loss = loss + opts.aux_coefficient * _aux_loss(module, silent, ys, preds, pres, var)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            info = {"loss": loss.item(), **{f"fvu{l}": f.item() for l, f in enumerate(fvus)},
                    **{f"l0_{l}": l0.mean().item() for l, l0 in enumerate(l0s)}}
            if folder is not None and (step % opts.checkpoint_every == 0 or step == total):
                _save_checkpoint(folder, step, key, module, opt, silent)
            if progress is not None:
                progress(step, total, info)
    except KeyboardInterrupt:
        if folder is None:
            raise Interrupted(f"stopped at step {step} of {total}; nothing was kept (no checkpoint folder)") from None
        _save_checkpoint(folder, step, key, module, opt, silent)
        raise Interrupted(f"stopped at step {step} of {total}; the checkpoint in {folder} is kept: run the same "
                          "command again to resume") from None

    meta = {"training": {**asdict(opts), "steps": total, "train_rows": len(train_rows), "heldout_rows": len(held_rows),
                         "resumed_at": start if resumed else None, "seconds": round(time.time() - t0, 1),
                         "final": info}}
    ts = module.to_set(model_name, fp, meta)
    card = transcoder_card(model, ts, held_rows)
    for t, fvu, l0 in zip(ts.transcoders, card["fvu"], card["l0"], strict=True):
        t.meta.update({"fvu": fvu, "l0": l0})
    ts.meta["card"] = card
    return ts


def _aux_loss(module: _Trainable, silent: torch.Tensor, ys: list[torch.Tensor], preds: list[torch.Tensor],
              pres: list[torch.Tensor], var: list[torch.Tensor]) -> torch.Tensor:
    """Dead features (silent for ``dead_tokens``) reconstruct what the live ones miss (Gao et al. 2024's AuxK)."""
    opts = module.opts
    total = preds[0].new_zeros(())
    for l, (y, p, pre) in enumerate(zip(ys, preds, pres, strict=True)):
        dead = silent[l] >= opts.dead_tokens
        n_dead = int(dead.sum())
        if not n_dead:
            continue
        k_aux = min(n_dead, 2 * opts.k)
        masked = pre.masked_fill(~dead, float("-inf"))
        vals, idx = masked.topk(k_aux, dim=-1)
        dec = F.embedding_bag(idx, module.W_dec[l][:, 0], per_sample_weights=vals.clamp(min=0), mode="sum")
        err = (y - p).detach()
        total = total + ((err - dec) ** 2).sum(-1).mean() / var[l]
    return total


# -- the card -------------------------------------------------------------------------------------

@torch.no_grad()
def replaced_logits(model: Any, ts: TranscoderSet, ids: torch.Tensor) -> torch.Tensor:
    """The model's logits with every MLP's output replaced by its transcoders' (no error terms)."""
    ins, outs = mlp_hooks(model, ts[0].site)
    got: dict[int, torch.Tensor] = {}
    device = model.cfg.device
    tset = ts.to(device)

    # On a split model a layer's activations are on its block's device; the transcoders are on the
    # embedding's (models.placement).
    def read(t: torch.Tensor, hook: Any, l: int) -> None:
        got[l] = t.float().to(device)

    def write(t: torch.Tensor, hook: Any, l: int) -> torch.Tensor:
        return tset.mlp_out([got[i] for i in range(l + 1)], l).to(t.device, t.dtype)

    hooks: list[tuple[str, Callable[..., Any]]] = []
    for l in range(len(ts)):
        hooks.append((ins[l], lambda t, hook, l=l: read(t, hook, l)))
        hooks.append((outs[l], lambda t, hook, l=l: write(t, hook, l)))
    return model.run_with_hooks(ids, fwd_hooks=hooks)


@torch.no_grad()
def transcoder_card(model: Any, ts: TranscoderSet, rows: Sequence[torch.Tensor], *,
                    batch_rows: int = 64) -> dict[str, Any]:
    """FVU and L0 per layer, and the all-MLPs-replaced KL (nats) and top-1 agreement, on ``rows``."""
    from circuitwise.features.formats import check_model

    check_model(ts, model)
    site = ts[0].site
    xs, ys = capture(model, rows, site, batch_rows=batch_rows)
    fvu, l0 = [], []
    cpu = ts.to("cpu", torch.float32)
    for l in range(len(ts)):
        pred = cpu.mlp_out(xs[: l + 1], l)
        y = ys[l]
        fvu.append(float(((y - pred) ** 2).sum() / ((y - y.mean(0)) ** 2).sum().clamp(min=1e-12)))
        l0.append(float((cpu[l].encode(xs[l]) > 0).sum(-1).float().mean()))
    kl_sum, agree, n = 0.0, 0, 0
    device = model.cfg.device
    for start in range(0, len(rows), batch_rows):
        ids, mask = _batch(rows[start:start + batch_rows], device)
        base = model(ids).float().log_softmax(-1)[mask]
        rep = replaced_logits(model, ts, ids).float().log_softmax(-1)[mask]
        kl_sum += float((base.exp() * (base - rep)).sum())
        agree += int((base.argmax(-1) == rep.argmax(-1)).sum())
        n += int(mask.sum())
    return {"fvu": fvu, "l0": l0, "kl": kl_sum / n, "top1_agreement": agree / n, "heldout_tokens": n,
            "heldout_rows": len(rows)}


def read_corpus(source: str | Path) -> list[str]:
    """Training texts from a text file (one document a line), a JSONL file (``{"text": …}`` rows, or a task
    file's ``clean`` + ``correct``), or a built-in task's name (its prompts with their answers)."""
    path = Path(source)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"the corpus {path} cannot be read as UTF-8 text ({e}); give a text or JSONL file") from e
        if path.suffix.lower() != ".jsonl":
            texts = [line for line in lines if line.strip()]
        else:
            texts = []
            for i, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{path}, line {i}: not JSON ({e.msg}); each line is one JSON object "
                                      "with a 'text' field") from None
                if isinstance(row, str):
                    texts.append(row)
                elif isinstance(row, dict) and isinstance(row.get("text"), str):
                    texts.append(row["text"])
                elif isinstance(row, dict) and isinstance(row.get("clean"), str):
                    texts.append(row["clean"] + str(row.get("correct") or ""))
                else:
                    raise ConfigError(f"{path}, line {i}: no 'text' field; each line is one JSON object with a "
                                      "'text' field (or a task row with 'clean' and 'correct')")
    else:
        from circuitwise.errors import TaskError
        from circuitwise.tasks.builtin import get_task

        try:
            task = get_task(str(source))
        except TaskError as e:
            raise ConfigError(f"the corpus {str(source)!r} is neither a file nor a built-in task ({e})") from None
        texts = [e.clean + e.correct for e in task.examples]
    if not texts:
        raise ConfigError(f"the corpus {source} holds no text; give a file with one document a line")
    return texts
