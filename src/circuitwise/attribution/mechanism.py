"""Mechanism read-outs: where a head looks from the answer position, what it writes, what its query prefers.

Every number is read at each prompt's own last token (the answer position) from one cached
forward per batch, over at most ``max_prompts`` prompts (the first ones: the read-out describes a
head, it does not estimate an effect, and the cost stays bounded on large tasks):

- **attention**: the pattern row at the answer position (``hook_pattern``), averaged over prompts
  by role (when the task names roles) and by source position — counted from the end (``-1`` is the
  answer position itself) when prompts differ in length, so that a position means the same thing
  in every prompt — and summed by source token string for the top source tokens;
- **OV**: what the head writes when it reads a token, through ``W_O`` and the unembedding. The
  head's output joins the residual at the answer position, so it goes through the final norm with
  that position's scale frozen (and a post-attention norm likewise), as direct logit attribution
  reads a head. The input is the head's actual value vector (``hook_v``) at the position read: for
  layer > 0 the residual there already holds what earlier layers moved in, which the raw embedding
  does not. The copying score asks what the IOI paper's copy score asks — does the head raise the
  token it reads? — as that token's z-score among all tokens' logits, with its rank, its top-5
  share over prompts and the cosine of the write with its unembedding (see ``COPY_Z``, ``AIMED``);
- **QK**: the pre-softmax score (``hook_attn_scores``) at the answer position, averaged the same way;
  the preferred role / position is the one the query scores highest.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from circuitwise.attribution.dla import head_label
from circuitwise.attribution.readout import FrozenNorm, Readout, readout
from circuitwise.metrics import gather_last
from circuitwise.models import placement
from circuitwise.tasks.tokenize import TokenizedTask

# A token counts as copied (suppressed) when its logit in the head's write is this many standard
# deviations of all tokens' logits above (below) their mean: with tens of thousands of tokens,
# a z of 3 is the top fraction of a percent, well clear of an unrelated token's spread.
COPY_Z = 3.0
# ... and when the write is aimed at that token more than a random direction typically is: its cosine
# with the token's unembedding at least one spread of a random direction's (1/sqrt(d_model)). This
# rules out what the z-score alone is fooled by: an unembedding most tokens of which read nothing
# (a write into unread space moves a few tokens a little, and their z is huge).
AIMED = 1.0
# A write whose logits spread less than this fraction of what a random vector of its norm would
# give reads as silent (the head writes into space the unembedding does not read): its z-scores
# would be rounding noise, so none is given.
SILENT = 1e-3
# The group of source positions no role names.
REST = "(rest)"

Input = Literal["residual", "embedding", "mixed", "head output"]
Reads = Literal["attended", "answer", "output"]


@dataclass(frozen=True)
class SourceWeight:
    """One role or source position seen from the answer position, averaged over the prompts that have it.

    ``key``: the role's name, or the position (``"-1"`` is the answer position when counted from
    the end). ``attention``: mean attention; ``score``: mean pre-softmax score over the prompts where
    the position can be attended (None where a sliding window masks it in every one); ``n``: prompts
    with this role or position; ``token``: the token most often there, and on how many of those prompts.
    """

    key: str
    attention: float
    score: float | None
    n: int
    token: str | None = None
    token_count: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TokenValue:
    token: str
    id: int
    value: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Write:
    """What the head writes to the logits when it reads one token, over the prompts.

    ``reads``: ``attended`` (the token at the position it attends to most, per prompt), ``answer``
    (the correct answer token where it occurs in the prompt, else its embedding) or ``output`` (the
    head's actual output at the answer position; the read token is then the correct answer, and
    ``z`` says whether the head raises it). ``input``: where the value vector came from.
    ``top`` / ``bottom``: the tokens the mean write raises / lowers most (value: mean logit relative
    to the vocabulary's mean). ``z``: the read token's mean z-score among all tokens (the copying
    score); ``rank``: its median rank (0 = raised most; tokens tied with it count as above it);
    ``top_fraction`` / ``bottom_fraction``: share of prompts where it is among the ``k`` most raised
    / lowered (the IOI paper's copy and negative copy scores); ``copies``: ``z >= COPY_Z`` and
    among the top ``k`` on at least half the prompts, and ``cosine`` (the mean cosine of the write with
    the token's centred unembedding column) at least ``AIMED`` random-direction spreads above 0;
    ``suppresses``: the same below.
    ``n``: prompts whose write is not silent (every statistic is over those; none when 0).
    """

    reads: Reads
    input: Input
    top: tuple[TokenValue, ...]
    bottom: tuple[TokenValue, ...]
    z: float | None
    rank: float | None
    top_fraction: float | None
    bottom_fraction: float | None
    cosine: float | None
    copies: bool
    suppresses: bool
    n: int

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["top"] = [t.to_json() for t in self.top]
        out["bottom"] = [t.to_json() for t in self.bottom]
        return out


@dataclass(frozen=True)
class HeadMechanism:
    """The read-out of one head. ``positions_from``: ``start`` (prompts of one length) or ``end``.

    ``reads_role`` / ``reads_position``: the role / position with the most mean attention;
    ``qk_role`` / ``qk_position``: the one with the highest mean pre-softmax score (positions:
    among those every prompt has). ``attended``: the per-prompt most-attended position's most
    common key, and ``attended_fraction`` the share of prompts where it is that one.
    """

    layer: int
    head: int
    label: str
    n_prompts: int
    positions_from: Literal["start", "end"]
    roles: tuple[SourceWeight, ...]
    positions: tuple[SourceWeight, ...]
    top_sources: tuple[TokenValue, ...]
    reads_role: str | None
    reads_position: str
    qk_role: str | None
    qk_position: str
    attended: str
    attended_fraction: float
    ov_attended: Write
    ov_answer: Write
    output: Write

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items()}
        out["roles"] = [r.to_json() for r in self.roles]
        out["positions"] = [p.to_json() for p in self.positions]
        out["top_sources"] = [t.to_json() for t in self.top_sources]
        for k in ("ov_attended", "ov_answer", "output"):
            out[k] = getattr(self, k).to_json()
        return out


@dataclass(frozen=True)
class Mechanism:
    """Read-outs of some heads on the first ``n_prompts`` of a task's ``of`` prompts."""

    n_prompts: int
    of: int
    heads: tuple[HeadMechanism, ...]

    @property
    def capped(self) -> bool:
        return self.n_prompts < self.of

    def to_json(self) -> dict[str, Any]:
        return {"n_prompts": self.n_prompts, "of": self.of, "capped": self.capped,
                "copy_z": COPY_Z, "aimed": AIMED, "heads": [h.to_json() for h in self.heads]}

    def __getitem__(self, label: str) -> HeadMechanism:
        for h in self.heads:
            if h.label == label:
                return h
        raise KeyError(f"{label} was not read out; heads: {', '.join(h.label for h in self.heads)}")


@dataclass
class _Rows:
    """Per-prompt reads of one head, gathered batch by batch."""

    pattern: list[torch.Tensor]  # [pos_i] attention from the answer position
    scores: list[torch.Tensor]  # [pos_i] pre-softmax scores
    v_att: list[torch.Tensor]  # [d_head] value at the most-attended position
    v_ans: list[torch.Tensor | None]  # [d_head] value where the answer token occurs, if it does
    z: list[torch.Tensor]  # [d_head] the head's z at the answer position


@torch.inference_mode()
def mechanism_readouts(model: Any, tok: TokenizedTask, heads: Sequence[tuple[int, int]], *,
                       max_prompts: int | None = None, top_k: int = 5, batch_size: int = 32) -> Mechanism:
    """Attention, OV and QK read-outs of ``heads`` (as (layer, head)) on the first ``max_prompts`` prompts."""
    heads = list(dict.fromkeys((int(l), int(h)) for l, h in heads))
    n = len(tok) if max_prompts is None else min(len(tok), max_prompts)
    if not heads or n == 0:
        return Mechanism(n_prompts=n, of=len(tok), heads=())
    sub = tok.slice(0, n)
    ro = readout(model)
    H = model.cfg.n_heads
    n_kv = int(getattr(model.cfg, "n_key_value_heads", None) or H)
    layers = sorted({l for l, _ in heads})
    names = {f"blocks.{l}.attn.hook_{k}" for l in layers for k in ("pattern", "attn_scores", "v", "z")}
    norms: list[FrozenNorm] = [n_ for n_ in (ro.final, *(ro.post_attn[l] for l in layers)) if n_ is not None]
    names |= {nm.scale_hook for nm in norms}
    rows = {hd: _Rows([], [], [], [], []) for hd in heads}
    scales: dict[str, list[torch.Tensor]] = {nm.name: [] for nm in norms}
    for b in sub.batches(batch_size):
        _, cache = model.run_with_cache(b.clean, names_filter=lambda nm: nm in names, return_type=None,
                                        device=placement.cache_device(model))
        for nm in norms:
            scales[nm.name].append(gather_last(cache[nm.scale_hook], b.last).float().reshape(len(b)).cpu())
        for l, h in heads:
            pat = gather_last(cache[f"blocks.{l}.attn.hook_pattern"][:, h], b.last).float().cpu()
            sc = gather_last(cache[f"blocks.{l}.attn.hook_attn_scores"][:, h], b.last).float().cpu()
            v = cache[f"blocks.{l}.attn.hook_v"][:, :, h // (H // n_kv)].float().cpu()  # [batch, pos, d_head]
            z = gather_last(cache[f"blocks.{l}.attn.hook_z"][:, :, h], b.last).float().cpu()
            r = rows[(l, h)]
            for i in range(len(b)):
                end = int(b.last[i]) + 1
                p = pat[i, :end]
                r.pattern.append(p)
                r.scores.append(sc[i, :end])
                # The first of equal maxima: a uniform head reads position 0, and says so.
                r.v_att.append(v[i, int(p.argmax())])
                where = (b.clean[i, :end] == b.answers[i, 0]).nonzero()
                r.v_ans.append(v[i, int(where[-1])] if len(where) else None)
                r.z.append(z[i])
    scale = {k: torch.cat(v_) for k, v_ in scales.items()}
    unembed = _Unembed.of(model)
    values = functools.cache(lambda: _Values.of(model))  # only where an answer is not in its prompt
    out = [_head(model, ro, unembed, values, sub, l, h, rows[(l, h)], scale, n_kv, top_k) for l, h in heads]
    return Mechanism(n_prompts=n, of=len(tok), heads=tuple(out))


def _head(model: Any, ro: Readout, unembed: _Unembed, values: Callable[[], _Values], tok: TokenizedTask, l: int,
          h: int, r: _Rows, scale: dict[str, torch.Tensor], n_kv: int, k: int) -> HeadMechanism:
    n = len(tok)
    aligned = tok.same_length
    lasts = [int(x) for x in tok.last]
    # Source positions as keys that mean the same thing in every prompt.
    keys = [[str(p if aligned else p - last - 1) for p in range(last + 1)] for last in lasts]
    positions = _grouped(
        [{key: (float(r.pattern[i][p]), float(r.scores[i][p]), tok.str_tokens[i][p]) for p, key in enumerate(keys[i])}
         for i in range(n)])
    positions.sort(key=lambda s: int(s.key))
    roles: list[SourceWeight] = []
    if tok.roles is not None:
        per: list[dict[str, tuple[float, float, str | None]]] = []
        for i, named in enumerate(tok.roles):
            at = {role: p for role, p in named.items() if 0 <= p <= lasts[i]}
            rest = [p for p in range(lasts[i] + 1) if p not in set(at.values())]
            d: dict[str, tuple[float, float, str | None]] = {
                role: (float(r.pattern[i][p]), float(r.scores[i][p]), tok.str_tokens[i][p]) for role, p in at.items()}
            if rest:
                sc = r.scores[i][rest]
                sc = sc[sc.isfinite()]
                d[REST] = (float(r.pattern[i][rest].sum()), float(sc.mean()) if len(sc) else -math.inf, None)
            per.append(d)
        roles = _grouped(per)
    named_roles = [s for s in roles if s.key != REST]
    # A query prefers among what it can score in every prompt (no sliding window masks it).
    everywhere = [s for s in positions if s.n == n and s.score is not None] or [
        s for s in positions if s.score is not None] or positions
    mass: Counter[str] = Counter()
    for i in range(n):
        for p, a in enumerate(r.pattern[i].tolist()):
            mass[tok.str_tokens[i][p]] += a / n
    top_sources = tuple(TokenValue(t, _token_id(tok, t), v) for t, v in mass.most_common(k))
    attended_keys = Counter(keys[i][int(r.pattern[i].argmax())] for i in range(n))
    attended, count = attended_keys.most_common(1)[0]
    att_ids = torch.stack([tok.clean[i, int(r.pattern[i].argmax())] for i in range(n)])
    W_O = model.W_O[l, h].float().cpu()
    fs = scale.get(ro.final.name) if ro.final is not None else None
    post = ro.post_attn[l]
    ps = scale.get(post.name) if post is not None else None

    def write(vals: torch.Tensor, read: torch.Tensor, reads: Reads, input: Input) -> Write:
        return _write(model, unembed, _normed(ro, l, vals @ W_O, fs, ps), read, k, reads, input)

    ans = tok.answers[:, 0].cpu()
    found = [v is not None for v in r.v_ans]
    missing = [int(t) for v, t in zip(r.v_ans, ans.tolist(), strict=True) if v is None]
    embedded: Iterator[torch.Tensor] = iter(
        _embedding_values(model, values(), l, h // (model.cfg.n_heads // n_kv), missing) if missing else [])
    v_ans = torch.stack([v if v is not None else next(embedded) for v in r.v_ans])
    src: Input = "residual" if all(found) else "embedding" if not any(found) else "mixed"
    return HeadMechanism(
        layer=l, head=h, label=head_label(l, h), n_prompts=n, positions_from="start" if aligned else "end",
        roles=tuple(roles), positions=tuple(positions), top_sources=top_sources,
        reads_role=max(named_roles, key=lambda s: s.attention).key if named_roles else None,
        reads_position=max(positions, key=lambda s: s.attention).key,
        qk_role=max(named_roles, key=_score).key if named_roles else None,
        qk_position=max(everywhere, key=_score).key,
        attended=attended, attended_fraction=count / n,
        ov_attended=write(torch.stack(r.v_att), att_ids, "attended", "residual"),
        ov_answer=write(v_ans, ans, "answer", src),
        output=write(torch.stack(r.z), ans, "output", "head output"),
    )


def _grouped(per: list[dict[str, tuple[float, float, str | None]]]) -> list[SourceWeight]:
    """Mean attention and score of each key over the prompts that have it, with its commonest token."""
    acc: dict[str, list[tuple[float, float, str | None]]] = {}
    for d in per:
        for key, val in d.items():
            acc.setdefault(key, []).append(val)
    out = []
    for key, vals in acc.items():
        toks = Counter(t for _, _, t in vals if t is not None).most_common(1)
        # Masked scores (-inf: outside a sliding window) are not preferences; they are left out.
        scores = [s for _, s, _ in vals if math.isfinite(s)]
        out.append(SourceWeight(key, sum(a for a, _, _ in vals) / len(vals),
                                sum(scores) / len(scores) if scores else None,
                                len(vals), toks[0][0] if toks else None, toks[0][1] if toks else None))
    return out


def _score(s: SourceWeight) -> float:
    return -math.inf if s.score is None else s.score


def _token_id(tok: TokenizedTask, s: str) -> int:
    for i, row in enumerate(tok.str_tokens):
        if s in row:
            return int(tok.clean[i, row.index(s)])
    return -1


def _apply(norm: FrozenNorm, x: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
    """``norm`` on ``x`` [n, d_model] with its scale [n] frozen at the answer position; its bias is not the head's."""
    if norm.centres:
        x = x - x.mean(-1, keepdim=True)
    if s is not None:
        x = x / s.to(x)[:, None]
    return x if norm.weight is None else x * norm.weight.to(x)


def _normed(ro: Readout, l: int, out: torch.Tensor, final_scale: torch.Tensor | None,
            post_scale: torch.Tensor | None) -> torch.Tensor:
    """A head's output [n, d_model] as the unembedding reads it: through the norms after it, scales frozen."""
    post = ro.post_attn[l]
    if post is not None:
        out = _apply(post, out, post_scale)
    if ro.final is not None:
        out = _apply(ro.final, out, final_scale)
    return out


def _embedding_values(model: Any, values: _Values, l: int, kv: int, ids: list[int]) -> torch.Tensor:
    """[n, d_head] the head's value vectors for tokens ``ids`` from their embeddings alone, through the
    layer's own input norm (what the head would read at a position holding nothing but the token)."""
    x = model.W_E[torch.tensor(ids, device=model.W_E.device)].unsqueeze(1)  # [n, 1, d_model]
    try:
        ln1 = model.blocks[l].ln1
    except AttributeError:  # no input norm on this block
        ln1 = None
    if ln1 is not None:
        # Called alone, the norm has no device hook of a split model (models.placement): the embedding
        # goes to the block's device itself.
        held = next(iter([*ln1.parameters(), *ln1.buffers()]), None)
        x = ln1(x if held is None else placement.move(x, held.device))
    v = x[:, 0].float().cpu() @ values.W_V[l, kv].float().cpu()
    return v if values.b_V is None else v + values.b_V[l, kv].float().cpu()


@dataclass(frozen=True)
class _Values:
    """The bridge stacks ``W_V`` / ``b_V`` over every layer on each access: read once per call."""

    W_V: torch.Tensor  # [layer, kv head, d_model, d_head]
    b_V: torch.Tensor | None  # [layer, kv head, d_head]; None for bias-free projections

    @classmethod
    def of(cls, model: Any) -> _Values:
        try:
            b_V = model.b_V
        except AttributeError:
            b_V = None
        return cls(model.W_V, b_V)


@dataclass(frozen=True)
class _Unembed:
    """``W_U`` where the model keeps it (device, dtype), and the two float32 statistics every write needs."""

    W_U: torch.Tensor  # [d_model, vocab]
    mean: torch.Tensor  # [d_model] the mean column: a token's logit relative to the vocabulary's mean
    rms: float  # of all entries: a random unit vector spreads the logits by about this much

    @classmethod
    def of(cls, model: Any) -> _Unembed:
        W = model.W_U
        rms = float(torch.linalg.vector_norm(W, dtype=torch.float32)) / math.sqrt(W.numel())
        return cls(W, W.mean(1, dtype=torch.float32), rms)

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """[n, vocab] float32 for ``out`` [n, d_model]: the product in the model's dtype, as it computes."""
        return (out.to(self.W_U) @ self.W_U).float()

    def centred(self, ids: torch.Tensor) -> torch.Tensor:
        """[n, d_model] the centred unembedding columns of ``ids``."""
        return self.W_U[:, ids.to(self.W_U.device)].T.float() - self.mean


def _write(model: Any, unembed: _Unembed, out: torch.Tensor, read: torch.Tensor, k: int, reads: Reads,
           input: Input) -> Write:
    out = out.to(unembed.W_U.device)
    logits = unembed.logits(out)
    sd = logits.std(1)
    # What a random direction of the write's norm would spread the logits by.
    live = sd > SILENT * out.norm(dim=-1) * unembed.rms
    if not bool(live.any()):
        return Write(reads, input, (), (), None, None, None, None, None, False, False, 0)
    read = read.to(out.device)
    logits, out, read = logits[live], out[live], read[live].long()
    # The read token's logit relative to the vocabulary's mean is the write's dot product with its
    # centred unembedding column; the cosine says how much of the write is aimed at that token.
    u = unembed.centred(read)
    cos = float(((out * u).sum(-1) / (out.norm(dim=-1) * u.norm(dim=-1)).clamp_min(1e-30)).mean())
    # A random direction's cosine with a fixed one has spread 1/sqrt(d_model).
    spreads = cos * math.sqrt(out.shape[-1])
    mean = (logits - logits.mean(1, keepdim=True)).mean(0)
    top, bottom = mean.topk(k), (-mean).topk(k)

    def tv(ids: torch.Tensor, vals: torch.Tensor) -> tuple[TokenValue, ...]:
        return tuple(TokenValue(model.tokenizer.decode([int(i)]), int(i), float(v))
                     for i, v in zip(ids, vals, strict=True))

    val = logits.gather(1, read.reshape(-1, 1))
    z = (val.squeeze(1) - logits.mean(1)) / sd[live]
    # Ties count against the token: one raised (or lowered) together with many others is not
    # singled out, so it is not copied (or suppressed) however large its z.
    rank = ((logits >= val).sum(1) - 1).float()
    from_bottom = ((logits <= val).sum(1) - 1).float()
    zm = float(z.mean())
    top_frac, bottom_frac = float((rank < k).float().mean()), float((from_bottom < k).float().mean())
    return Write(reads, input, tv(top.indices, top.values), tv(bottom.indices, -bottom.values), zm,
                 float(rank.median()), top_frac, bottom_frac, cos,
                 spreads >= AIMED and zm >= COPY_Z and top_frac >= 0.5,
                 spreads <= -AIMED and zm <= -COPY_Z and bottom_frac >= 0.5, int(live.sum()))


__all__ = ["AIMED", "COPY_Z", "HeadMechanism", "Mechanism", "SourceWeight", "TokenValue", "Write", "mechanism_readouts"]
