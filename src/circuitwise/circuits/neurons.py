"""Node- and neuron-level scores and circuits, as MIB defines them (issue 24).

What MIB means. The reference is hannamw/EAP-IG at 7af394a, the copy MIB's circuit track pins
(``eap/attribute_node.py``, ``eap/graph.py``, ``eap/evaluate.py``; MIB-circuit-track's
``run_attribution.py --level edge|node|neuron`` and ``run_evaluation.py --level``):

- A **node** is a sender of the edge graph (:mod:`circuitwise.circuits.graph`): the input, each
  attention head, each MLP (EAP-IG's ``n_forward`` nodes ``input``, ``a{l}.h{h}``, ``m{l}``). The
  logits are not scored.
- A **neuron** is one output dimension of a node: ``d_model`` of them per node, the coordinates of
  what the node writes into the residual stream (``Graph.neurons_scores`` is ``[n_forward,
  d_model]``). Not an MLP's hidden units: heads and the input have neurons too, and an MLP has
  ``d_model`` of them, not ``d_mlp``. MIB's README: "neuron-level patching assigns scores to each
  neuron in each of those submodules".
- **Scores** (``get_scores_eap`` / ``get_scores_eap_ig`` with ``neuron=True``): a neuron's score is
  ``Σ_{examples, positions} (clean_s − corrupted_s)[d] · ∂m/∂out_s[d]``, a node's the same summed
  over ``d`` too, so a node's score is the sum of its neurons'. EAP takes the gradient at the clean
  run; EAP-IG-inputs at α = k/n, k = 1…n on the input embedding (our ``quadrature="right"``; its
  edge-level EAP-IG takes k = 0…n−1). Signs and the batch-size scale are the edge scores'
  (:mod:`circuitwise.circuits.scores`): MIB's files hold ours divided by its batch size.
- The reference takes the gradient of the input and of each head at its output hook
  (``hook_embed``, ``attn.hook_result``) but of an MLP at ``hook_mlp_in``: the MLP's *output*
  difference is paired with the gradient at its *input* (``bwd_hooks.append((node.in_hook, …))``,
  unchanged on hannamw/EAP-IG's main branch). That product is not the attribution of the MLP's output.
  ``mlp_gradient="output"`` (the default) scores every node at its output, ``∂m/∂out_s``, and then
  a node's score is also the sum of its outgoing edges' scores (``∂m/∂out_s = Σ_r ∂m/∂in_r``, the
  sender enters every later receiver's input additively; :meth:`EdgeScores.node_scores`);
  ``mlp_gradient="input"`` reproduces the reference's MLP scores (``bench/neuron_parity.py``).
- **Circuits** (``Graph.apply_topn(n, level="node"|"neuron")``): the ``n`` nodes or neurons of
  largest ``|score|`` (or largest signed score), with every edge out of a kept node. Evaluation
  (``evaluate_graph`` with ``neurons_in_graph``): each receiver reads, of every node, its live
  output in the kept dimensions and the corrupted run's in the others,
  ``input_r = Σ_s n_s ⊙ live_s + (1 − n_s) ⊙ corrupted_s`` — the edge mask changes nothing there
  (it only spares nodes whose every dimension is kept, which have nothing to replace). A node-level
  circuit is the same with whole rows (a node outside it is its corrupted output to every reader).
  MIB's curve takes ``int(p · U)`` units at p = 0.1 % … 100 % of the ``U`` scored units.
- **Files**: EAP-IG's graph JSON carries node scores as each node's ``"score"`` and neuron-level
  graphs as ``"neurons"`` (bool per dimension) and ``"neurons_scores"``; the ``.pt`` as
  ``nodes_scores``, ``neurons_in_graph``, ``neurons_scores`` (:mod:`circuitwise.circuits.interop`).
  At 7af394a ``Graph.to_json`` fails on such graphs (it indexes a score row for the logits node,
  which has none), so MIB's ``run_attribution.py --level node|neuron`` cannot save its JSON.
  ``Graph.from_pt`` reads our files exactly, and ``Graph.from_json`` (MIB's ``load_graph_from_json``
  is the same code) our node-level JSON; a neuron-level JSON it misreads: it writes a head's row
  through ``forward_index(node)``, whose default ``attn_slice=True`` is the whole layer's heads, so
  every head of a layer gets the layer's last head's neurons (measured in ``bench/neuron_parity.py``).
  Give MIB neuron-level graphs as ``.pt``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from circuitwise.circuits.forward import Prefix, first_difference, run_graph, shared_prefix
from circuitwise.circuits.gradients import chunks, combine_points, quadrature_points, score_dtype
from circuitwise.circuits.graph import Graph
from circuitwise.circuits.interop import export_eap_ig_units
from circuitwise.circuits.patch import PatchedMetrics, normalise
from circuitwise.circuits.registry import Gradient, Quadrature, check_choice, check_steps, options_config
from circuitwise.circuits.scores import (
    NodeScores,
    Prepared,
    Progress,
    ScoredGraph,
    no_progress,
    prepare,
    sender_outputs,
    stack_budget,
    strongest_first,
)
from circuitwise.circuits.select import Rank
from circuitwise.errors import ConfigError
from circuitwise.metrics import get_metric, targets_of
from circuitwise.tasks.tokenize import TokenizedTask
from circuitwise.types import nan_to_none

#: The granularity of a unit circuit: whole nodes, or single output dimensions of nodes.
Level = Literal["node", "neuron"]
#: Which gradient an MLP node's score pairs with its output difference (module docstring).
MLPGradient = Literal["output", "input"]
#: The gradient methods that score neurons (EAP-IG's ``attribute_node`` methods ``EAP``, ``EAP-IG-inputs``).
NeuronMethod = Literal["eap", "eap-ig"]


@dataclass(frozen=True)
class NeuronOptions:
    """``method``: ``eap`` (one gradient, at the ``gradient`` run) or ``eap-ig`` (``steps`` points on
    the input embedding, placed by ``quadrature``; ``right`` is EAP-IG's node-level rule);
    ``mlp_gradient``: ``output`` scores an MLP at its output, ``input`` as the reference does."""

    method: NeuronMethod = "eap-ig"
    steps: int = 5
    quadrature: Quadrature = "right"
    gradient: Gradient = "clean"
    mlp_gradient: MLPGradient = "output"

    def __post_init__(self) -> None:
        check_choice("neurons", "method", self.method, NeuronMethod)
        check_steps("neurons", self.steps)
        check_choice("neurons", "quadrature", self.quadrature, Quadrature)
        check_choice("neurons", "gradient", self.gradient, Gradient)
        check_choice("neurons", "mlp_gradient", self.mlp_gradient, MLPGradient)

    def points(self) -> tuple[list[float], list[float]]:
        """The integration points α (1 = clean) and their weights."""
        if self.method == "eap":
            return [1.0 if self.gradient == "clean" else 0.0], [1.0]
        return quadrature_points(self.quadrature, self.steps)


@dataclass(frozen=True, eq=False)
class NeuronScores(ScoredGraph):
    """One score per output dimension of every sender, ``[sender, d_model]``, signed like edge scores."""

    def __post_init__(self) -> None:
        if self.scores.dim() != 2 or self.scores.shape[0] != len(self.graph.senders):
            raise ValueError(f"scores has shape {tuple(self.scores.shape)}, the graph "
                             f"{len(self.graph.senders)} senders")

    @property
    def d_model(self) -> int:
        return int(self.scores.shape[1])

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.graph.senders]

    def node_scores(self) -> NodeScores:
        """Each node's score: the sum of its neurons' (as EAP-IG's node level sums over ``d_model``)."""
        return self._as_nodes(self.scores.double().sum(1).float())

    def top(self, k: int, by: Rank = "abs") -> list[tuple[str, int, float]]:
        """The ``k`` strongest neurons as ``(node, dimension, score)``."""
        idx = strongest_first(self.scores.flatten(), by)[:k]
        d = self.d_model
        return [(self.names[i // d], i % d, float(self.scores.flatten()[i])) for i in idx.tolist()]

    def to_json(self) -> dict[str, Any]:
        return {**self._run_json(), "d_model": self.d_model, "nodes": self.names,
                "scores": nan_to_none(self.scores.tolist())}


# -- scoring -------------------------------------------------------------------------------------------


def _neuron_hook(g: Graph, out: torch.Tensor, self_mlp: torch.Tensor, delta: torch.Tensor, last: torch.Tensor,
                 weights: torch.Tensor, Nb: int):
    """A ``receiver_grad`` adding ``Σ_c w_c · delta_s[d] · grad_r[d]`` (summed over examples, positions
    and every receiver ``r`` that reads ``s``) into ``out[s, d]``; and into ``self_mlp[l, d]`` the
    reference's MLP term, layer ``l``'s MLP output difference times the gradient at its own input."""
    rows = torch.arange(Nb, device=out.device)
    uniform = bool((weights == weights[0]).all())

    def on_grad(rs: slice | int, grad: torch.Tensor) -> None:
        gsum = combine_points(grad, weights, Nb, uniform).to(out.dtype)
        if rs == g.logits_receiver:  # gsum [1, Nb, d] at each example's last position
            out.add_(torch.einsum("snd,nd->sd", delta[:, rows, last], gsum[0]))
            return
        first = rs.start if isinstance(rs, slice) else rs
        n_send = g.senders_before(first)
        # Every receiver of one call reads the same senders: their gradients add up first.
        out[:n_send] += torch.einsum("snpd,npd->sd", delta[:n_send], gsum.sum(0))
        rec = g.receivers[first]
        if rec.kind == "mlp":
            self_mlp[rec.layer] += torch.einsum("npd,npd->d", delta[g.mlp_sender(rec.layer)], gsum[0])

    return on_grad


def neuron_sums(prep: Prepared, options: NeuronOptions, progress: Progress = no_progress
                ) -> tuple[torch.Tensor, float, float]:
    """Neuron scores ``[sender, d]`` averaged over the examples, and the clean and corrupted metric sums."""
    gm, tok, metric = prep.gm, prep.tok, prep.metric
    g = gm.graph
    alphas, weights = options.points()
    dt = score_dtype(gm)
    out = torch.zeros(len(g.senders), gm.d_model, dtype=dt, device=gm.device)
    self_mlp = torch.zeros(g.n_layers, gm.d_model, dtype=dt, device=gm.device)
    clean_sum = corr_sum = 0.0
    batches = list(tok.batches(prep.batch_size))
    for i, b in enumerate(batches):
        assert b.corrupted is not None
        Nb, targets = len(b), targets_of(b)
        out_c, m_c = sender_outputs(gm, b.clean, b.last, targets)
        out_k, m_k = sender_outputs(gm, b.corrupted, b.last, targets)
        clean_sum += float(metric(m_c).sum())
        corr_sum += float(metric(m_k).sum())
        # Before the prompts' first difference every sender's difference is zero and every interpolated
        # input the same: those positions add nothing, run once, and the gradient runs start after them.
        start = first_difference(b.clean, b.corrupted, b.last)
        delta = (out_c - out_k)[:, :, start:].to(dt)
        del out_c, out_k
        e_c, e_k = gm.embed(b.clean), gm.embed(b.corrupted)
        prefix = shared_prefix(gm, e_c, start)
        last = b.last.to(gm.device)
        for chunk, w in chunks(alphas, weights, max(1, prep.batch_size // Nb)):
            c = len(chunk)
            hook = _neuron_hook(g, out, self_mlp, delta, last - start,
                                torch.tensor(w, dtype=gm.dtype, device=gm.device), Nb)
            alpha = torch.tensor(chunk, dtype=gm.dtype, device=gm.device).view(c, 1, 1, 1)
            x0 = (e_k.unsqueeze(0) + alpha * (e_c - e_k).unsqueeze(0))[:, :, start:].reshape(c * Nb, -1, e_c.shape[-1])
            x0 = x0.detach().requires_grad_(True)
            pre = None if prefix is None else Prefix(start, tuple((k.repeat(c, 1, 1, 1), v.repeat(c, 1, 1, 1))
                                                                  for k, v in prefix.kv))
            with torch.enable_grad():
                run = run_graph(gm, x0, last.repeat(c), targets.repeat(c), receiver_grad=hook, prefix=pre)
                torch.autograd.grad(metric(run.answer_logits[0]).sum(), x0)
        progress(i + 1, len(batches), f"{options.method} neurons")
    if options.mlp_gradient == "input" and g.has_mlp:
        for l in range(g.n_layers):
            out[g.mlp_sender(l)] = self_mlp[l]
    return out / len(tok), clean_sum, corr_sum


def score_neurons(model: Any, tok: TokenizedTask, options: NeuronOptions | Mapping[str, Any] | None = None, *,
                  batch_size: int | None = None, metric: str = "logit_diff", progress: Progress = no_progress,
                  check: bool = True, **overrides: Any) -> NeuronScores:
    """Every neuron's score (module docstring); ``.node_scores()`` gives the nodes'."""
    opts = _options(options, overrides)
    if opts.method == "eap" and opts.gradient == "clean" and get_metric(metric).reference:
        raise ConfigError("kl has zero gradient at the clean run, so EAP with its gradient there scores every "
                          "neuron 0; use gradient='corrupted', or method='eap-ig'.")
    t0 = time.perf_counter()
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    sums, clean_sum, corr_sum = neuron_sums(prep, opts, progress)
    n = len(prep.tok)
    config = options_config(opts)
    if opts.method == "eap":
        del config["steps"], config["quadrature"]
    return NeuronScores(graph=prep.gm.graph, scores=sums.float().cpu(), method=opts.method, metric=metric,
                        config={**config, "granularity": "neuron"}, clean_metric=clean_sum / n,
                        corrupted_metric=corr_sum / n, n_examples=n, seconds=time.perf_counter() - t0)


def _options(options: NeuronOptions | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> NeuronOptions:
    names = {f for f in NeuronOptions.__dataclass_fields__}
    given = dict(options) if isinstance(options, Mapping) else {}
    unknown = sorted((set(given) | set(overrides)) - names)
    if unknown:
        raise ConfigError(f"Neuron scores have no option {unknown[0]!r}; their options are: "
                          f"{', '.join(sorted(names))}.")
    if options is not None and not isinstance(options, (NeuronOptions, Mapping)):
        raise ConfigError(f"Neuron options must be a NeuronOptions or a mapping, not {type(options).__name__}.")
    base = options if isinstance(options, NeuronOptions) else NeuronOptions(**given)
    return replace(base, **overrides) if overrides else base


# -- circuits ------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class UnitCircuit:
    """A node- or neuron-level circuit: the kept output dimensions of every sender ``[sender, d]``
    (a node-level circuit keeps whole rows). Everything else reads the corrupted run."""

    graph: Graph
    level: Level
    neurons: torch.Tensor  # [sender, d_model] bool

    def __post_init__(self) -> None:
        if self.neurons.dim() != 2 or self.neurons.shape[0] != len(self.graph.senders):
            raise ValueError(f"neurons has shape {tuple(self.neurons.shape)}, the graph "
                             f"{len(self.graph.senders)} senders")
        check_choice("unit circuit", "level", self.level, Level)

    @property
    def nodes(self) -> torch.Tensor:
        """``[sender]`` bool: the nodes with a kept dimension (EAP-IG's ``nodes_in_graph``)."""
        return self.neurons.any(1)

    @property
    def n_units(self) -> int:
        return int(self.neurons.sum()) if self.level == "neuron" else int(self.nodes.sum())

    def node_names(self) -> list[str]:
        return [s.name for s, k in zip(self.graph.senders, self.nodes.tolist(), strict=True) if k]


def top_units(scores: NeuronScores, n: int, level: Level = "neuron", by: Rank = "abs") -> UnitCircuit:
    """The ``n`` strongest neurons (or nodes, by :meth:`NeuronScores.node_scores`): ``apply_topn``."""
    check_choice("top_units", "level", level, Level)
    check_choice("top_units", "by", by, Rank)
    S, d = scores.scores.shape
    total = S * d if level == "neuron" else S
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= total:
        raise ConfigError(f"Choose between 0 and {total} {level}s, not {n!r}.")
    values = scores.scores.flatten() if level == "neuron" else scores.node_scores().scores
    keep = torch.zeros(values.numel(), dtype=torch.bool)
    keep[strongest_first(values, by)[:n]] = True
    neurons = keep.view(S, d) if level == "neuron" else keep[:, None].expand(S, d).clone()
    return UnitCircuit(scores.graph, level, neurons)


def budget_units(total: int, budgets: Sequence[float]) -> list[int]:
    """Units taken at each budget fraction: MIB's ``int(pct * n_scored_items)``."""
    return [int(b * total) for b in budgets]


@torch.no_grad()
def unit_patched_metrics(prep: Prepared, neurons: torch.Tensor, *, batch_size: int | None = None,
                         progress: Progress = no_progress) -> PatchedMetrics:
    """Per-example metrics of the clean prompts with, for each ``neurons[k]`` ``[sender, d]`` (bool),
    every sender's other dimensions read from the corrupted run (module docstring)."""
    gm, tok, metric = prep.gm, prep.tok, prep.metric
    g = gm.graph
    if neurons.dim() == 2:
        neurons = neurons[None]
    if tuple(neurons.shape[1:]) != (len(g.senders), gm.d_model):
        raise ConfigError(f"A unit circuit is [{len(g.senders)}, {gm.d_model}] (senders × d_model) on this model, "
                          f"not {list(neurons.shape[1:])}. Score the neurons on the model you evaluate.")
    n = len(tok)
    # Each distinct circuit runs once (a curve's small budgets often repeat one), and every dimension kept or
    # none is the clean or the corrupted run by definition.
    uniq, inverse = torch.unique(neurons.flatten(1).bool().cpu(), dim=0, return_inverse=True)
    full, empty = uniq.all(1), ~uniq.any(1)
    todo = (~full & ~empty).nonzero().flatten()
    masks = uniq[todo].view(-1, len(g.senders), gm.d_model)
    bs = batch_size or prep.batch_size
    patched_u, clean, corr = torch.empty(len(uniq), n), torch.empty(n), torch.empty(n)
    n_batches = -(-n // bs)
    for i, b in enumerate(tok.batches(bs)):
        assert b.corrupted is not None
        rows = slice(i * bs, i * bs + len(b))
        targets = targets_of(b)
        # Positions before the first clean/corrupted difference are the same in every run: computed once.
        start = first_difference(b.clean, b.corrupted, b.last)
        x_c = gm.embed(b.clean)
        prefix = shared_prefix(gm, x_c, start)
        x_c = x_c[:, start:]
        run_c = run_graph(gm, x_c, b.last, targets, prefix=prefix)
        run_k = run_graph(gm, gm.embed(b.corrupted)[:, start:], b.last, targets, record=True, prefix=prefix)
        clean[rows] = metric(run_c.answer_logits[0]).float().cpu()
        corr[rows] = metric(run_k.answer_logits[0]).float().cpu()
        patched_u[full, rows] = clean[rows]
        patched_u[empty, rows] = corr[rows]
        step = stack_budget(gm, len(b), x_c.shape[1])
        for k0 in range(0, len(todo), step):
            m = masks[k0:k0 + step].to(gm.device)
            # Every edge dropped: what a receiver reads of a sender is decided by its kept dimensions alone.
            keep = torch.zeros(m.shape[0], len(g.senders), len(g.receivers), dtype=gm.dtype, device=gm.device)
            run = run_graph(gm, x_c, b.last, targets, keep=keep, replacement=run_k.outputs, dims=m, prefix=prefix)
            patched_u[todo[k0:k0 + m.shape[0]], rows] = metric(run.answer_logits).float().cpu()
        progress(i + 1, n_batches, "unit circuits")
    patched = patched_u[inverse]
    return PatchedMetrics(patched, clean, corr)


def unit_faithfulness(model: Any, tok: TokenizedTask, circuits: UnitCircuit | Sequence[UnitCircuit], *,
                      metric: str = "logit_diff", batch_size: int | None = None, check: bool = True,
                      progress: Progress = no_progress) -> list[float]:
    """Each circuit's faithfulness ``(m(C) − m(corrupted)) / (m(clean) − m(corrupted))`` of the task-mean
    metric, the others' dimensions patched from the corrupted run (MIB's ``patching`` intervention)."""
    many = [circuits] if isinstance(circuits, UnitCircuit) else list(circuits)
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    pm = unit_patched_metrics(prep, torch.stack([c.neurons for c in many]) if many else
                              torch.zeros(0, len(prep.gm.graph.senders), prep.gm.d_model, dtype=torch.bool),
                              progress=progress)
    clean, corr = float(pm.clean.double().mean()), float(pm.corrupted.double().mean())
    return [float(normalise(float(p.double().mean()), clean, corr)) for p in pm.patched]


def write_unit_graph(path: str | Path, scores: NeuronScores, *, level: Level = "neuron",
                     circuit: UnitCircuit | None = None) -> Path:
    """``scores`` (the nodes' at ``level="node"``) and optionally a circuit as an EAP-IG graph file
    (``.json`` or ``.pt``) for MIB's ``evaluate_area_under_curve(level=…)``. Neuron level: give MIB the
    ``.pt`` (its ``Graph.from_json`` gives every head a layer's last head's neurons; module docstring)."""
    check_choice("write_unit_graph", "level", level, Level)
    neurons = None if circuit is None else circuit.neurons
    if level == "node":
        return export_eap_ig_units(path, scores.graph, scores.d_model, node_scores=scores.node_scores().scores,
                                   neurons=neurons)
    return export_eap_ig_units(path, scores.graph, scores.d_model, neuron_scores=scores.scores, neurons=neurons)


__all__ = ["Level", "MLPGradient", "NeuronMethod", "NeuronOptions", "NeuronScores", "UnitCircuit", "budget_units",
           "neuron_sums", "score_neurons", "top_units", "unit_faithfulness", "unit_patched_metrics",
           "write_unit_graph"]
