"""Attribution graphs: exact direct effects through the frozen replacement, many rows per backward pass.

Receivers (rows) are the targets and every active feature; senders (columns) are the features, the
error nodes and the token embeddings. The frozen replacement (:mod:`~circuitwise.features.replacement`)
is linear in its senders, so a receiver's row is its read vector pulled back to every sender's write
site: the gradient at each layer's MLP output (and at the embedding) times what the sender writes
there. ``B`` receivers share one backward pass, stacked along the batch: the frozen map's transposed
pass (:func:`~circuitwise.features.replacement.pullback`, equal to autograd through the frozen forward
and half its work: a linear map needs no forward to be differentiated).

Targets: ``Salient`` (the most probable next tokens until their probability adds up to
``cumulative``, at most ``max_n``; circuit-tracer's choice), ``Tokens`` (named tokens) or
``LogitDiff`` (the task's metric, answer − wrong answer). A logit target is its token's logit minus the
mean logit (a shift every logit shares moves no probability), read before any soft-cap.

Memory is planned before the backward passes: the dense adjacency is ``N²`` float32 for ``N`` nodes,
and each row of a batch holds a frozen forward. A graph that cannot fit is refused with
:class:`~circuitwise.errors.MemoryBudgetError` naming the fixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.errors import ConfigError, MemoryBudgetError
from circuitwise.features.graph import AttributionGraph, Node
from circuitwise.features.replacement import CleanRun, check_model, clean_run, frozen_forward, pullback
from circuitwise.features.transcoder import TranscoderSet
from circuitwise.models.memory import Shapes, budget_of, default_budget, resident
from circuitwise.sizes import human


@dataclass(frozen=True)
class Salient:
    """The most probable next tokens until ``cumulative`` probability, at most ``max_n``."""

    max_n: int = 10
    cumulative: float = 0.95


@dataclass(frozen=True)
class Tokens:
    """Named target tokens (strings as they follow the prompt, e.g. ``" young"``, or ids)."""

    tokens: tuple[str | int, ...]


@dataclass(frozen=True)
class LogitDiff:
    """The task's metric: ``answer``'s logit minus ``wrong``'s (one target node)."""

    answer: str | int
    wrong: str | int


Targets = Salient | Tokens | LogitDiff
DEFAULT_BATCH_ROWS = 32


def as_targets(targets: Targets | str | Sequence[str | int] | None) -> Targets:
    if targets is None or targets == "salient":
        return Salient()
    if isinstance(targets, (Salient, Tokens, LogitDiff)):
        return targets
    if isinstance(targets, (str, int)):
        return Tokens((targets,))
    return Tokens(tuple(targets))


def token_id(model: Any, tok: str | int) -> int:
    """One token's id; a string must be exactly one token (BOS is never an answer)."""
    if isinstance(tok, int):
        return tok
    ids = model.tokenizer.encode(tok, add_special_tokens=False)
    if len(ids) != 1:
        raise ConfigError(f"target {tok!r} is {len(ids)} tokens for this model's tokenizer; name a single token "
                          "(usually with its leading space, e.g. ' young') or its id")
    return int(ids[0])


@dataclass(frozen=True)
class GraphPlan:
    """What a graph will hold and cost, decided before the backward passes."""

    n_features: int
    n_errors: int
    n_tokens: int
    n_targets: int
    adjacency_bytes: int
    row_bytes: int
    batch_rows: int
    budget: int

    @property
    def n_nodes(self) -> int:
        return self.n_features + self.n_errors + self.n_tokens + self.n_targets


def plan_graph(model: Any, w: Any, T: int, n_features: int, n_targets: int, batch_rows: int,
               budget: int | None = None) -> GraphPlan:
    """The memory a graph of ``T`` tokens needs (``N²`` float32 adjacency, plus one frozen forward and its
    gradients per row of a batch); refuses with the fixes when even one row does not fit."""
    L, d = w.n_layers, w.d_model
    n = n_features + L * T + T + n_targets
    adj = 4 * n * n
    # Per stacked row: the transposed pass keeps three [T, d] gradients per layer (MLP write, attention
    # write, and the injected reads) and a few working ones, counted twice for the einsums' temporaries.
    row = 2 * T * (4 * L * d + 8 * d) * w.dtype.itemsize
    if budget is None:
        s = Shapes.from_model(model)
        budget = budget_of(model) - int(resident(s, w.device))
    if torch.device(w.device).type == "cpu":
        free = budget - adj  # the adjacency and the backward rows share the one pool
    else:
        # The adjacency is filled in host RAM (attribution_graph moves each block of rows there), so on a
        # GPU it counts against the RAM that is free, and the rows alone against the device's budget.
        host = default_budget("cpu")
        if adj > host:
            raise MemoryBudgetError(
                f"this attribution graph has {n} nodes ({n_features} active features, {L * T} error nodes, {T} "
                f"tokens, {n_targets} targets): its dense adjacency needs {human(adj)} of RAM (it is kept on the "
                f"CPU), over the {human(host)} free. Fixes: a shorter prompt, fewer targets, a sparser transcoder "
                "set (TopK with a smaller k), or a machine with more RAM")
        free = budget
    if free < row:
        raise MemoryBudgetError(
            f"this attribution graph has {n} nodes ({n_features} active features, {L * T} error nodes, {T} tokens, "
            f"{n_targets} targets): its dense adjacency alone needs {human(adj)} and one backward row "
            f"{human(row)}, over the {human(budget)} left. Fixes: a shorter prompt, fewer targets, a sparser "
            "transcoder set (TopK with a smaller k), or a larger --max-memory")
    rows = max(1, min(batch_rows, free // row))
    return GraphPlan(n_features, L * T, T, n_targets, adj, row, int(rows), int(budget))


def _target_rows(model: Any, run: CleanRun, targets: Targets, position: int) -> list[tuple[Node, torch.Tensor, float]]:
    """Each target node with its read vector (on the final normed residual) and its constant term."""
    w = run.w
    W_U = w.W_U
    b_U = w.b_U if w.b_U is not None else torch.zeros(W_U.shape[1], dtype=W_U.dtype, device=W_U.device)
    probs = run.logits[position].float().softmax(-1)
    L = w.n_layers
    tok = getattr(model, "tokenizer", None)
    name = (lambda i: tok.decode([i])) if tok is not None else str  # noqa: E731
    if isinstance(targets, LogitDiff):
        a, b = token_id(model, targets.answer), token_id(model, targets.wrong)
        u = W_U[:, a] - W_U[:, b]
        value = float(run.final[position] @ u + b_U[a] - b_U[b])
        node = Node("target", L, position, value=value, token=-1,
                    label=f"logit({name(a)!r}) - logit({name(b)!r})")
        return [(node, u, float(b_U[a] - b_U[b]))]
    if isinstance(targets, Salient):
        if not (0 < targets.cumulative <= 1) or targets.max_n < 1:
            raise ConfigError("salient targets need 0 < cumulative ≤ 1 and max_n ≥ 1")
        p, idx = probs.sort(descending=True)
        n = int((p.cumsum(0) < targets.cumulative).sum()) + 1
        ids = idx[: min(n, targets.max_n)].tolist()
    else:
        ids = [token_id(model, t) for t in targets.tokens]
        if not ids:
            raise ConfigError("name at least one target token")
    mean_u, mean_b = W_U.mean(1), b_U.mean()
    out = []
    for i in ids:
        u = W_U[:, i] - mean_u
        c = float(b_U[i] - mean_b)
        node = Node("target", L, position, value=float(run.final[position] @ u) + c, token=int(i),
                    label=f"logit {name(int(i))!r}", probability=float(probs[i]))
        out.append((node, u, c))
    return out


def attribution_graph(model: Any, transcoders: TranscoderSet, prompt_or_tokens: str | torch.Tensor | Sequence[int],
                      targets: Targets | str | Sequence[str | int] | None = None, *, position: int = -1,
                      batch_rows: int = DEFAULT_BATCH_ROWS, budget: int | None = None) -> AttributionGraph:
    """The attribution graph of one prompt (see the module docstring).

    ``position`` is where targets read (default the last). ``batch_rows`` receivers share a backward
    pass (fewer where memory is short). ``budget`` (bytes) overrides the model's memory budget.
    """
    w = check_model(model, transcoders)
    if isinstance(prompt_or_tokens, str):
        prompt = prompt_or_tokens
        # Untruncated: to_tokens cuts at the context by default, and the graph was of the prompt's first n_ctx tokens.
        tokens = model.to_tokens(prompt, truncate=False)[0]
    else:
        tokens = torch.as_tensor(prompt_or_tokens).reshape(-1)
        prompt = model.tokenizer.decode(tokens.tolist()) if getattr(model, "tokenizer", None) else ""
    T = int(tokens.shape[0])
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if isinstance(n_ctx, int) and T > n_ctx:
        raise ConfigError(f"The prompt is {T} tokens; the model's context is {n_ctx}. Shorten it.")
    if not -T <= position < T:
        raise ConfigError(f"position {position} is outside the prompt's {T} tokens")
    position %= T
    # Before any forward: the nodes every graph has (errors, tokens, one target) must fit.
    plan_graph(model, w, T, 0, 1, batch_rows, budget)
    tcs = transcoders.to(w.device, w.dtype)
    run = clean_run(model, tcs, tokens, w)
    bridge_err = check_clean_run(model, run)
    feats = _active(run)
    tgt = _target_rows(model, run, as_targets(targets), position)
    plan = plan_graph(model, w, T, len(feats), len(tgt), batch_rows, budget)
    graph = _build(model, run, tcs, feats, tgt, plan, prompt, as_targets(targets))
    closure_err = check_closure(graph)
    return graph.with_(meta={**graph.meta, "guard": {"bridge_logits_max_diff": bridge_err,
                                                     "target_closure_max_err": closure_err}})


# The guard's bounds in float32, relative to (1 + the largest |logit|) or (1 + Σ |terms|); half precision
# gets a few of its eps (models.precision.tolerance). Measured on the 15 families: ≤ 1.2e-6 and ≤ 6.2e-7.
GUARD_LOGITS_TOL = 1e-4
GUARD_CLOSURE_TOL = 1e-4


def check_clean_run(model: Any, run: CleanRun) -> float:
    """The guard on the engine: its clean run's logits against the model's own forward (the bridge's), at
    every position. The replacement freezes what this run computed, so a family the engine reads wrongly
    (or a bridge that changed) is refused here, before any backward pass; returns the largest difference."""
    from circuitwise.models.precision import is_half, tolerance

    with torch.no_grad():
        theirs = model(run.tokens[None])
    # A half-precision model is attributed in float32 (compute_dtype): its own forward rounds to its dtype.
    dtype = theirs.dtype if is_half(theirs.dtype) else run.w.dtype
    theirs = theirs[0].to(run.logits.device, torch.float32)
    ours = run.logits.float()
    err = float((ours - theirs).abs().max())
    bound = tolerance(dtype, GUARD_LOGITS_TOL) * (1.0 + float(theirs.abs().max()))
    if not err <= bound:
        raise ConfigError(f"circuitwise's engine does not reproduce this model's logits (largest difference {err:.3g}, "
                          f"allowed {bound:.3g}), so its attribution graph would be wrong. This architecture is not "
                          "supported by attribution graphs yet; please report it with the model name.")
    return err


def check_closure(graph: AttributionGraph) -> float:
    """The guard on freezing: every target's incoming edges plus its bias-only value make its value. That
    holds only if the replacement is linear in its nodes, i.e. if freezing took effect; returns the
    largest gap (relative to 1 + the terms' absolute sum)."""
    from circuitwise.models.precision import tolerance

    rows = range(graph.target_nodes.start, graph.target_nodes.stop)
    err = 0.0
    for i in rows:
        row = graph.adjacency[i].double()
        # Relative to the terms summed: random post-norm families (Gemma 2/3) have edges of 1e4 that cancel.
        scale = 1.0 + float(row.abs().sum()) + abs(float(graph.bias[i]))
        gap = abs(float(row.sum()) + float(graph.bias[i]) - graph.nodes[i].value) / scale
        err = max(err, gap)
    dtype = getattr(torch, graph.dtype, torch.float32)
    if not err <= tolerance(dtype, GUARD_CLOSURE_TOL):
        raise ConfigError(f"the frozen replacement does not add up: a target's edges plus its bias-only value miss "
                          f"its value by {err:.3g} (relative), so freezing did not take effect on this model. "
                          "Attribution graphs do not support this architecture yet; please report it.")
    return err


def target_read(graph: AttributionGraph, w: Any, index: int) -> tuple[torch.Tensor, float]:
    """Target ``index``'s read vector on the final normed residual and its constant term (model ``w``'s
    weights): the metric direction, or a token's unembedding less the mean one."""
    node = graph.nodes[graph.target_nodes][index]
    W_U = w.W_U
    b_U = w.b_U if w.b_U is not None else torch.zeros(W_U.shape[1], dtype=W_U.dtype, device=W_U.device)
    if node.token < 0:
        a, b = graph.meta["metric_tokens"]
        return W_U[:, a] - W_U[:, b], float(b_U[a] - b_U[b])
    return W_U[:, node.token] - W_U.mean(1), float(b_U[node.token] - b_U.mean())


def _active(run: CleanRun) -> list[tuple[int, int, int, float]]:
    """Active features ``(layer, position, feature, activation)`` in node order."""
    out = []
    for l, a in enumerate(run.acts):
        for p, f in a.nonzero().tolist():
            out.append((l, p, f, float(a[p, f])))
    return out


def _build(model: Any, run: CleanRun, tcs: TranscoderSet, feats: list[tuple[int, int, int, float]],
           tgt: list[tuple[Node, torch.Tensor, float]], plan: GraphPlan, prompt: str,
           targets: Targets) -> AttributionGraph:
    w = run.w
    L, T = w.n_layers, int(run.tokens.shape[0])
    nF, nE, nT = len(feats), L * T, T
    tok = getattr(model, "tokenizer", None)
    ids = run.tokens.tolist()
    tstr = tuple(tok.decode([i]) for i in ids) if tok is not None else tuple(map(str, ids))
    nodes: list[Node] = [Node("feature", l, p, f, a, label=f"L{l} F{f} @{p}") for l, p, f, a in feats]
    nodes += [Node("error", l, p, value=float(run.errors[l][p].norm()), label=f"error L{l} @{p}")
              for l in range(L) for p in range(T)]
    nodes += [Node("token", -1, p, value=float(run.embed[p].norm()), token=int(run.tokens[p]),
                   label=f"token {tstr[p]!r} @{p}") for p in range(T)]
    nodes += [t[0] for t in tgt]
    N = len(nodes)
    adj = torch.zeros(N, N, dtype=torch.float32)
    bias = torch.zeros(N, dtype=torch.float32)
    # Receivers: targets first (the rows pruning needs most), then features.
    recv: list[tuple[int, int, int, torch.Tensor, float]] = []  # (row, site, position, read vector, constant)
    for i, (node, u, c) in enumerate(tgt):
        recv.append((nF + nE + nT + i, L, node.position, u, c))
    for i, (l, p, f, _) in enumerate(feats):
        recv.append((i, l, p, tcs[l].W_enc[:, f], float(tcs[l].b_enc[f])))
    by_layer = _feature_index(feats, L, w.device)
    for lo in range(0, len(recv), plan.batch_rows):
        chunk = recv[lo:lo + plan.batch_rows]
        g_emb, g_w, _ = pullback(run, tcs, [(site, p, u) for _, site, p, u, _ in chunk])
        rows = torch.tensor([r[0] for r in chunk])
        block = torch.zeros(len(chunk), N, dtype=w.dtype, device=w.device)
        for src in range(L):
            pos, fid, act, cols = by_layer[src]
            if len(cols) == 0:
                continue
            t = tcs[src]
            tot = torch.zeros(len(chunk), len(cols), dtype=w.dtype, device=w.device)
            for o in range(t.n_out):
                dec = t.W_dec[fid, o] if t.cross_layer else t.W_dec[fid]  # [n, d]
                tot += torch.einsum("bnd,nd->bn", g_w[src + o][:, pos], dec)
            block[:, cols] = tot * act
        for l in range(L):
            block[:, nF + l * T: nF + (l + 1) * T] = torch.einsum("btd,td->bt", g_w[l], run.errors[l])
        block[:, nF + nE: nF + nE + nT] = torch.einsum("btd,td->bt", g_emb, run.embed)
        adj[rows] = block.float().cpu()
    bias[[r[0] for r in recv]] = _bias(run, tcs, recv).float().cpu()
    meta: dict[str, Any] = {"position": int(tgt[0][0].position), "bos": run.bos, "batch_rows": plan.batch_rows,
                            "adjacency_bytes": plan.adjacency_bytes, "target_spec": repr(targets)}
    if isinstance(targets, LogitDiff):
        meta["metric_tokens"] = [token_id(model, targets.answer), token_id(model, targets.wrong)]
    return AttributionGraph(
        nodes=tuple(nodes), adjacency=adj, bias=bias, model=_model_name(model), n_layers=L, prompts=(prompt,),
        tokens=(tuple(run.tokens.tolist()),), token_strs=(tstr,), targets=_kind(targets),
        transcoders=describe_set(tcs), dtype=str(w.dtype).replace("torch.", ""), meta=meta)


def _kind(t: Targets) -> str:
    return {Salient: "salient", Tokens: "tokens", LogitDiff: "metric"}[type(t)]


def _model_name(model: Any) -> str:
    cfg = model.cfg
    return str(getattr(cfg, "model_name", None) or getattr(cfg, "name", None) or type(model).__name__)


def describe_set(tcs: TranscoderSet) -> dict[str, Any]:
    """The transcoder set as plain JSON (what a graph records about it)."""
    t0 = tcs[0]
    return {"model": tcs.model, "cross_layer": tcs.cross_layer, "activation": t0.activation, "k": t0.k,
            "site": t0.site, "skip": t0.W_skip is not None, "n_features": [t.n_features for t in tcs.transcoders],
            "meta": dict(tcs.meta)}


def _feature_index(feats: list[tuple[int, int, int, float]], L: int, dev: torch.device) -> list[tuple[Any, ...]]:
    out = []
    for l in range(L):
        cols = [i for i, x in enumerate(feats) if x[0] == l]
        out.append((torch.tensor([feats[i][1] for i in cols], dtype=torch.long, device=dev),
                    torch.tensor([feats[i][2] for i in cols], dtype=torch.long, device=dev),
                    torch.tensor([feats[i][3] for i in cols], device=dev), cols))
    return out


@torch.no_grad()
def _bias(run: CleanRun, tcs: TranscoderSet, recv: list[tuple[int, int, int, torch.Tensor, float]]) -> torch.Tensor:
    """Each receiver's value with every node at zero: embedding, features and errors off, biases on."""
    w = run.w
    own_bias = [(t.b_dec[0] if t.cross_layer else t.b_dec).expand_as(run.embed)[None] for t in tcs.transcoders]
    tc_in, final = frozen_forward(run, tcs, torch.zeros_like(run.embed)[None], own_bias)
    sites = tc_in + [final]
    return torch.stack([sites[site][0, p] @ u + c for _, site, p, u, c in recv]).to(w.dtype)


__all__ = ["DEFAULT_BATCH_ROWS", "GraphPlan", "LogitDiff", "Salient", "Targets", "Tokens", "as_targets",
           "attribution_graph", "check_clean_run", "check_closure", "describe_set", "plan_graph", "target_read",
           "token_id"]
