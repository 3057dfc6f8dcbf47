"""Edge pruning: learned hard-concrete masks on the edges, optimised on the task (Bhaskar et al., 2024).

Every edge e carries a mask ``z_e ∈ [0, 1]`` drawn from a hard-concrete distribution (Louizos et
al., 2018) with a learned location ``log α_e``::

    u ~ U(0, 1),  s = σ((log u − log(1 − u) + log α_e) / β),  z_e = clip(l + (r − l)·s, 0, 1)

Stretching to ``(l, r) ⊃ [0, 1]`` and clipping puts real mass on exactly 0 and 1, so the
expected number of non-zero masks, ``Σ_e σ(log α_e − β log(−l / r))``, is a differentiable L0
norm. The receiver reads ``z_e · clean_e + (1 − z_e) · corrupted_e`` — the graph forward's ``keep``
mask (:func:`~circuitwise.circuits.forward.run_graph`), with the corrupted run's sender outputs
(or their task mean) as the replacement, so ``z = 1`` everywhere is the full model and ``z = 0``
the corrupted one.

The masks are trained to make the masked model match the full model on each prompt while a
Lagrangian holds the expected sparsity at a target that ramps up linearly from 0 (the paper's
``λ₁(s − t) + λ₂(s − t)²``, with λ₁, λ₂ maximised, here with ``s − t`` in units of the target
number kept). The circuit is the target number of masks with the largest ``log α``: the
deterministic mask ``log α > 0`` holds about that many, but the multipliers overshoot, so late in
training it can hold one or two fewer, the edges on their way down (on the bundled GPT-2 at
EAP-IG's 6 edges, 400 steps: 5 positive, the 6th at P(z ≠ 0) 0.17 and needed, faithfulness 0.89
without it and 0.97 with it). How many are positive is recorded (``positive_log_alpha``).
The scores are each edge's ``P(z_e ≠ 0)``, so every selection (top-n, threshold, target
faithfulness) ranks by how sure the optimisation is that the edge is needed.

At ``granularity="node"`` the masks sit on senders (heads, MLPs, the input) instead: an edge reads
its sender's mask, and the sparsity counts senders.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch

from circuitwise.circuits.eap_ig import EAPIGOptions, score_eap_ig
from circuitwise.circuits.forward import GraphModel, run_graph
from circuitwise.circuits.patch import Ablation, check_ablation, mean_outputs, normalise
from circuitwise.circuits.registry import DiscoveryMethod
from circuitwise.circuits.scores import EdgeScores, NodeScores, Prepared, Progress, no_progress, prepare
from circuitwise.errors import ConfigError
from circuitwise.metrics import Targets, targets_of
from circuitwise.tasks.tokenize import TokenizedTask

Objective = Literal["metric", "kl"]
Granularity = Literal["edge", "node"]
WarmStart = Literal["none", "eap-ig"]
Stopped = Literal["steps", "seconds"]

DEFAULT_SPARSITY = 0.95

# Above this many bytes the corrupted runs' sender outputs are recomputed each step, not cached.
_CACHE_BYTES = 512e6


@dataclass(frozen=True)
class EdgePruningOptions:
    """Options of :func:`edge_pruning`; every field is checked on construction (``ConfigError``).

    Attributes:
        steps: optimisation steps, one batch of prompts each (batches taken in turn).
        max_seconds: stop after the step during which this much wall time has passed since the call
            began (``None``: no limit). The result records how many steps ran and why it stopped.
        sparsity: target fraction of masks that are zero (0.95: keep about 5% of the edges).
        kept: target number of masks kept instead (edges, or senders at node granularity); give
            ``sparsity`` or ``kept``, not both. Neither: ``sparsity=0.95``.
        warmup: fraction of ``steps`` over which the target sparsity ramps linearly from 0 (the
            paper's sparsity warm-up; a sudden target prunes before the masks learn what matters).
        lr: Adam learning rate of the masks' ``log α``.
        lambda_lr: Adam learning rate (gradient ascent) of the two Lagrange multipliers; the
            constraint is measured relative to the target number kept, so it suits any graph size.
        init_log_alpha: every ``log α`` at the start; positive starts from (nearly) the full model.
            1 (P(z ≠ 0) ≈ 0.93) keeps the early masks noisy enough that an edge pushed down during
            the sparsity ramp still gets gradient back. From 3 both bundled models lost a needed
            edge for good: at EAP-IG's circuit size and the default steps their circuits reached
            faithfulness 0.89 (GPT-2, 6 edges) and 0.89 (Llama, 12), against 0.97 and 0.93 from 1;
            no model we measured did worse from 1.
        temperature: the hard-concrete temperature β (2/3 in Louizos et al. and the paper).
        stretch: the stretch interval ``(l, r)``, ``l < 0`` and ``r > 1``.
        objective: ``"metric"`` matches the task metric (logit difference) per prompt,
            ``((m_masked − m_full) / (m_clean − m_corrupted))²``; ``"kl"`` the KL divergence of the
            full model's two-answer distribution from the masked one's. See :func:`edge_pruning`.
        granularity: ``"edge"`` (a mask per edge) or ``"node"`` (a mask per sender).
        ablation: what a pruned edge reads: the corrupted run (``"corrupted"``) or the sender's
            mean over the task's clean prompts (``"mean"``). Evaluate with the same ablation.
        seed: seeds the mask noise; the same seed, options and inputs give identical masks.
        warm_start: ``"eap-ig"`` starts each mask's ``log α`` from EAP-IG's ranking of it (MIB's
            best edge-pruning entries start from attribution): ``init_log_alpha + warm_spread·(2u − 1)``
            with ``u`` the mask's rank by ``|score|`` in [0, 1] (1 = first; at node granularity a
            sender's score is the sum of its edges'), so the likely edges start kept and the rest
            start near the cut; ``"none"`` starts every mask at ``init_log_alpha``.
        warm_spread: half the range of the warm start's ``log α`` around ``init_log_alpha``. 0.5: on the
            bundled Llama it reaches in 50 steps the circuit cold training reaches in 200 (faithfulness
            0.928 against 0.920 cold at 50); at 2 both bundled models lost a needed edge the ranking put
            low (0.89), as a high ``init_log_alpha`` does (bench/edge_pruning_warm.py).
    """

    steps: int = 400
    max_seconds: float | None = None
    sparsity: float | None = None
    kept: int | None = None
    warmup: float = 0.5
    lr: float = 0.1
    lambda_lr: float = 0.01
    init_log_alpha: float = 1.0
    temperature: float = 2 / 3
    stretch: tuple[float, float] = (-0.1, 1.1)
    objective: Objective = "metric"
    granularity: Granularity = "edge"
    ablation: Ablation = "corrupted"
    seed: int = 0
    warm_start: WarmStart = "none"
    warm_spread: float = 0.5

    def __post_init__(self) -> None:
        def whole(name: str, v: Any, lo: int) -> None:
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"Edge pruning's {name} must be a whole number ≥ {lo}, got {v!r}.")

        def real(name: str, v: Any, ok: bool, want: str) -> None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok:
                raise ConfigError(f"Edge pruning's {name} must be {want}, got {v!r}.")

        whole("steps", self.steps, 1)
        whole("seed", self.seed, 0)
        if self.max_seconds is not None:
            real("max_seconds", self.max_seconds, _num(self.max_seconds) and self.max_seconds > 0,
                 "a positive number of seconds (or None for no limit)")
        if self.sparsity is not None and self.kept is not None:
            raise ConfigError("Give edge pruning a target sparsity or a number of masks to keep (kept), not both.")
        if self.sparsity is not None:
            real("sparsity", self.sparsity, _num(self.sparsity) and 0 <= self.sparsity < 1,
                 "a fraction in [0, 1) of masks to prune (0.95 keeps 5%)")
        if self.kept is not None:
            whole("kept", self.kept, 1)
        real("warmup", self.warmup, _num(self.warmup) and 0 <= self.warmup <= 1, "a fraction of the steps in [0, 1]")
        for name in ("lr", "lambda_lr", "temperature"):
            v = getattr(self, name)
            real(name, v, _num(v) and v > 0, "a positive number")
        real("init_log_alpha", self.init_log_alpha, True, "a finite number")
        st = self.stretch
        if isinstance(st, list):  # as YAML and --option give it
            st = tuple(st)
            object.__setattr__(self, "stretch", st)
        if not (isinstance(st, tuple) and len(st) == 2 and all(_num(x) and math.isfinite(x) for x in st)
                and st[0] < 0 and st[1] > 1):
            raise ConfigError(f"Edge pruning's stretch must be a pair (l, r) with l < 0 < 1 < r, got {st!r} "
                              "((-0.1, 1.1) is usual).")
        real("warm_spread", self.warm_spread, _num(self.warm_spread) and self.warm_spread >= 0, "a number ≥ 0")
        for name, kinds in (("objective", Objective), ("granularity", Granularity), ("warm_start", WarmStart)):
            if getattr(self, name) not in get_args(kinds):
                raise ConfigError(f"Unknown edge-pruning {name} {getattr(self, name)!r}. "
                                  f"Choose one of: {', '.join(get_args(kinds))}.")
        check_ablation(self.ablation)

    def target_sparsity(self, n_masks: int) -> float:
        """The final target as a fraction of ``n_masks`` masks pruned."""
        if self.kept is not None:
            if self.kept > n_masks:
                raise ConfigError(f"Edge pruning was asked to keep {self.kept} masks but there are only "
                                  f"{n_masks} at {self.granularity} granularity; ask for fewer.")
            return 1 - self.kept / n_masks
        return DEFAULT_SPARSITY if self.sparsity is None else float(self.sparsity)


def _num(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


@dataclass(frozen=True, eq=False)
class HardConcrete:
    """The stretched, clipped concrete distribution shared by all masks of one run."""

    temperature: float
    left: float
    right: float

    def sample(self, log_alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / self.temperature)
        return (self.left + (self.right - self.left) * s).clamp(0.0, 1.0)

    def p_nonzero(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """``P(z > 0)``: each mask's share of the expected L0 norm."""
        return torch.sigmoid(log_alpha - self.temperature * math.log(-self.left / self.right))

    def deterministic(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """The mask at test time: the noise-free ``clip(l + (r − l)·σ(log α), 0, 1)``."""
        return (self.left + (self.right - self.left) * torch.sigmoid(log_alpha)).clamp(0.0, 1.0)


@dataclass(frozen=True, eq=False)
class _Batch:
    x: torch.Tensor  # clean input embeddings [N, P, d]
    last: torch.Tensor
    targets: Targets
    full: torch.Tensor  # the full model's answer logits [N, 2]
    rep: torch.Tensor | None  # replacement sender outputs [S, N or 1, P, d]; None: recompute


@dataclass(frozen=True, eq=False)
class PruningSetup:
    """A task made ready for mask training: batches, the full and corrupted metrics, the mask layout."""

    prep: Prepared
    batches: tuple[_Batch, ...]
    corrupted_x: tuple[torch.Tensor, ...]  # to recompute replacements that were not cached
    clean_metric: float
    corrupted_metric: float
    granularity: Granularity
    means: torch.Tensor | None

    @property
    def n_masks(self) -> int:
        g = self.prep.gm.graph
        return g.n_edges if self.granularity == "edge" else len(g.senders)

    def edge_masks(self, z: torch.Tensor) -> torch.Tensor:
        """Masks ``[mask]`` as one value per edge (a node's mask on each of its sender's edges)."""
        if self.granularity == "edge":
            return z
        return z[self.prep.gm.graph.edge_index[0].to(z.device)]

    def replacement(self, i: int) -> torch.Tensor:
        b = self.batches[i]
        if b.rep is not None:
            return b.rep
        gm = self.prep.gm
        with torch.no_grad():
            out = run_graph(gm, self.corrupted_x[i], b.last, b.targets, record=True).outputs
        assert out is not None
        return out

    def answer_logits(self, i: int, z: torch.Tensor) -> torch.Tensor:
        """Batch ``i``'s answer logits ``[N, 2]`` with masks ``z`` (any value in [0, 1], differentiable)."""
        b = self.batches[i]
        gm = self.prep.gm
        keep = gm.graph.to_dense(self.edge_masks(z).to(gm.dtype)[None], fill=1.0)
        return run_graph(gm, b.x, b.last, b.targets, keep=keep, replacement=self.replacement(i)).answer_logits[0]


@torch.no_grad()
def setup_pruning(prep: Prepared, *, granularity: Granularity = "edge", ablation: Ablation = "corrupted"
                  ) -> PruningSetup:
    """Run the clean and corrupted prompts once: targets, replacements and the clean–corrupted gap."""
    gm, tok = prep.gm, prep.tok
    means = mean_outputs(gm, tok, prep.batch_size) if ablation == "mean" else None
    P = tok.clean.shape[1]
    cache = len(tok) * P * len(gm.graph.senders) * gm.d_model * torch.finfo(gm.dtype).bits / 8 <= _CACHE_BYTES
    batches, corr_x = [], []
    clean_sum = corr_sum = 0.0
    for b in tok.batches(prep.batch_size):
        assert b.corrupted is not None
        x_c, x_k = gm.embed(b.clean), gm.embed(b.corrupted)
        full = run_graph(gm, x_c, b.last, targets_of(b)).answer_logits[0]
        run_k = run_graph(gm, x_k, b.last, targets_of(b), record=means is None and cache)
        clean_sum += float(prep.metric(full).sum())
        corr_sum += float(prep.metric(run_k.answer_logits[0]).sum())
        rep = means[:, :, : b.clean.shape[1]] if means is not None else run_k.outputs
        batches.append(_Batch(x_c, b.last, targets_of(b), full, rep))
        corr_x.append(x_k)
    n = len(tok)
    return PruningSetup(prep, tuple(batches), tuple(corr_x), clean_sum / n, corr_sum / n, granularity, means)


def task_loss(setup: PruningSetup, objective: Objective, logits: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """How far the masked answer logits ``[N, 2]`` are from the full model's, averaged over prompts."""
    if objective == "kl":
        # Over the two answers (the read-out's first two columns, whatever the metric reads besides).
        p = torch.log_softmax(full[..., :2], -1)
        return (p.exp() * (p - torch.log_softmax(logits[..., :2], -1))).sum(-1).mean()
    gap = setup.clean_metric - setup.corrupted_metric
    m = setup.prep.metric
    return ((m(logits) - m(full)) / gap).pow(2).mean()


@dataclass(frozen=True)
class PruningResult:
    """The trained masks: what :func:`edge_pruning` turns into edge scores."""

    log_alpha: torch.Tensor  # [mask], cpu float32
    steps_done: int
    stopped: Stopped
    final_target: float  # the target sparsity at the last step (below the goal if stopped early)
    expected_sparsity: float  # 1 − mean P(z ≠ 0) at the end
    last_task_loss: float


def warm_log_alpha(ranking: torch.Tensor, options: EdgePruningOptions) -> torch.Tensor:
    """The warm start's ``log α`` from a score per mask: spread by rank (``|score|``; ties by index)."""
    M = ranking.numel()
    order = torch.argsort(ranking.abs().double(), descending=True, stable=True)
    u = torch.empty(M, dtype=torch.float64)
    u[order] = torch.linspace(1.0, 0.0, M, dtype=torch.float64) if M > 1 else torch.ones(1, dtype=torch.float64)
    return (float(options.init_log_alpha) + float(options.warm_spread) * (2 * u - 1)).float()


def train_masks(setup: PruningSetup, options: EdgePruningOptions, *, progress: Progress = no_progress,
                t0: float | None = None, init: torch.Tensor | None = None) -> PruningResult:
    """Optimise the masks' ``log α`` and the Lagrange multipliers; deterministic given ``options.seed``.

    ``init``: each mask's starting ``log α`` (a warm start); default ``init_log_alpha`` everywhere.
    """
    t0 = time.perf_counter() if t0 is None else t0
    gm: GraphModel = setup.prep.gm
    hc = HardConcrete(float(options.temperature), *map(float, options.stretch))
    M = setup.n_masks
    goal = options.target_sparsity(M)
    warm = options.warmup * options.steps
    start = torch.full((M,), float(options.init_log_alpha)) if init is None else init.float().reshape(M)
    log_alpha = start.to(gm.device).clone().requires_grad_(True)
    lambdas = torch.zeros(2, dtype=torch.float32, device=gm.device, requires_grad=True)
    opt = torch.optim.Adam([log_alpha], lr=options.lr)
    opt_lambda = torch.optim.Adam([lambdas], lr=options.lambda_lr, maximize=True)
    noise = torch.Generator().manual_seed(options.seed)  # on the CPU, so any device draws the same masks
    eps = 1e-6
    stopped: Stopped = "steps"
    step = 0
    target = 0.0
    loss_value = float("nan")
    with torch.enable_grad():
        while step < options.steps:
            target = goal * min(1.0, (step + 1) / warm) if warm > 0 else goal
            u = torch.rand(M, generator=noise).clamp(eps, 1 - eps).to(gm.device)
            z = hc.sample(log_alpha, u)
            i = step % len(setup.batches)
            loss = task_loss(setup, options.objective, setup.answer_logits(i, z), setup.batches[i].full)
            # The constraint in units of the target number kept (the paper's is in units of all
            # masks): one λ learning rate then works for 3 kept edges of 110 or 3000 of 30 000.
            gap = ((1 - hc.p_nonzero(log_alpha).mean()) - target) / max(1 - goal, 1 / M)
            lagrangian = lambdas[0] * gap + lambdas[1] * gap.pow(2)
            opt.zero_grad()
            opt_lambda.zero_grad()
            (loss + lagrangian).backward()
            opt.step()
            opt_lambda.step()
            loss_value = float(loss.detach())
            step += 1
            progress(step, options.steps, "edge pruning")
            if options.max_seconds is not None and time.perf_counter() - t0 >= options.max_seconds:
                stopped = "seconds" if step < options.steps else "steps"
                break
    la = log_alpha.detach()
    return PruningResult(la.float().cpu(), step, stopped, target, float(1 - hc.p_nonzero(la).mean()), loss_value)


def edge_pruning(
    model: Any,
    tok: TokenizedTask,
    options: EdgePruningOptions | None = None,
    *,
    batch_size: int | None = None,
    metric: str = "logit_diff",
    progress: Progress = no_progress,
    check: bool = True,
) -> EdgeScores:
    """Learn which edges the task needs; score each edge by ``P(z_e ≠ 0)`` under its trained mask.

    The objective defaults to matching the metric per prompt, normalised by the clean–corrupted
    gap: faithfulness is measured in that metric, and by Jensen the loss bounds it,
    ``(1 − faithfulness)² ≤ loss``, so a small loss guarantees a faithful circuit. The paper's KL
    (``objective="kl"``) here covers the two answers only (the graph forward computes just their
    logits), which saturates once the model is confident and so tolerates large logit errors.

    The method's own circuit, the target number of masks with the largest ``log α``, is named in
    ``config["circuit"]`` (:func:`learned_circuit` gives it as an edge mask); the scores also
    rank the edges for any selection (a target faithfulness: the fewest top edges that reach it).
    """
    t0 = time.perf_counter()
    options = EdgePruningOptions() if options is None else options
    if not isinstance(options, EdgePruningOptions):
        raise ConfigError(f"edge_pruning takes an EdgePruningOptions, got {type(options).__name__}.")
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    setup = setup_pruning(prep, granularity=options.granularity, ablation=options.ablation)
    options.target_sparsity(setup.n_masks)  # a bad target fails before any training
    if options.objective == "metric":
        normalise(0.0, setup.clean_metric, setup.corrupted_metric)  # a degenerate gap fails now
    init = None
    if options.warm_start == "eap-ig":
        warm = score_eap_ig(model, tok, EAPIGOptions(), batch_size=batch_size, metric=metric, progress=progress,
                            check=False).scores
        if options.granularity == "node":  # a sender's attribution: the sum of its edges' (the node's own)
            warm = torch.zeros(len(prep.gm.graph.senders)).index_add_(0, prep.gm.graph.edge_index[0], warm)
        init = warm_log_alpha(warm, options)
    res = train_masks(setup, options, progress=progress, t0=t0, init=init)
    hc = HardConcrete(float(options.temperature), *map(float, options.stretch))
    p = setup.edge_masks(hc.p_nonzero(res.log_alpha.double())).float()
    g = prep.gm.graph
    M = setup.n_masks
    k = max(1, round(M * (1 - options.target_sparsity(M))))
    # The circuit: the k largest log α (ties by index), k the target number kept. Named, so
    # saturated float32 scores cannot blur it.
    names = g.edge_names if options.granularity == "edge" else [s.name for s in g.senders]
    order = torch.argsort(res.log_alpha, descending=True, stable=True)[:k]
    config = {
        **{key: (list(v) if isinstance(v, tuple) else v) for key, v in asdict(options).items()},
        "score": "P(mask != 0)", "n_masks": M, "circuit": [names[i] for i in sorted(order.tolist())],
        "positive_log_alpha": int((res.log_alpha > 0).sum()), "steps_done": res.steps_done,
        "stopped": res.stopped, "final_target_sparsity": res.final_target,
        "expected_sparsity": res.expected_sparsity, "last_task_loss": res.last_task_loss,
    }
    return EdgeScores(
        graph=g, scores=p, method="edge-pruning", metric=metric, config=config,
        clean_metric=setup.clean_metric, corrupted_metric=setup.corrupted_metric, n_examples=len(tok),
        seconds=time.perf_counter() - t0,
    )


def edge_pruning_nodes(model: Any, tok: TokenizedTask, options: EdgePruningOptions | None = None, *,
                       batch_size: int | None = None, metric: str = "logit_diff", progress: Progress = no_progress,
                       check: bool = True) -> NodeScores:
    """Node scores from masks on the senders (``granularity="node"`` whatever ``options`` says):
    each node's ``P(z ≠ 0)``; ``config["circuit"]`` names the kept nodes."""
    options = dataclasses.replace(options or EdgePruningOptions(), granularity="node")
    s = edge_pruning(model, tok, options, batch_size=batch_size, metric=metric, progress=progress, check=check)
    g = s.graph
    to_logits = torch.tensor([g.edge_id(n.name, "logits") for n in g.senders])  # every sender has this edge
    return NodeScores(graph=g, scores=s.scores[to_logits], method=s.method, metric=s.metric, config=s.config,
                      clean_metric=s.clean_metric, corrupted_metric=s.corrupted_metric, n_examples=s.n_examples,
                      seconds=s.seconds)


def learned_circuit(scores: EdgeScores) -> torch.Tensor:
    """Edge pruning's own circuit (``config["circuit"]``) as a bool ``[edge]`` mask.

    At node granularity it is every edge whose sender was kept (prune dangling edges after).
    """
    named = scores.config.get("circuit")
    if scores.method != "edge-pruning" or not isinstance(named, list):
        raise ConfigError(f"These scores come from {scores.method!r}, not edge pruning; select a circuit "
                          "from them with select_circuit instead.")
    g = scores.graph
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    if scores.config.get("granularity") == "node":
        index = {s.name: i for i, s in enumerate(g.senders)}
        kept = torch.zeros(len(g.senders), dtype=torch.bool)
        kept[[index[n] for n in named]] = True
        return kept[g.edge_index[0]]
    keep[[g.edge_ids[n] for n in named]] = True
    return keep


METHOD = DiscoveryMethod(
    "edge-pruning", "Edge pruning: hard-concrete masks on the edges, trained to a target sparsity (Bhaskar et al.).",
    EdgePruningOptions, edge_pruning, nodes=edge_pruning_nodes,
)

__all__ = ["DEFAULT_SPARSITY", "METHOD", "EdgePruningOptions", "Granularity", "HardConcrete", "Objective",
           "PruningResult", "PruningSetup", "edge_pruning", "edge_pruning_nodes", "learned_circuit", "setup_pruning",
           "task_loss", "train_masks", "WarmStart", "warm_log_alpha"]
