"""``results.json``: every number of a run — what the report, the notebook display and compare read.

The pipeline fills one :class:`RunResults` section by section (each assignment is validated) and
writes it after each stage with ``complete: false``; ``complete: true`` is set last, beside a report
that exists.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

from pydantic import Field

from circuitwise.schema.base import FileModel, Interval, Num, Open, Section
from circuitwise.schema.sweeps import RunSweep
from circuitwise.types import Shows

FORMAT: Final = "circuitwise.results"
VERSION = 1


class StageResources(Section):
    """One stage's batch, estimated peak memory (the loaded model included) and time."""

    stage: str
    batch: int
    memory_bytes: int
    seconds: float


class Resources(Section):
    """The memory and time plan (``circuitwise.plan.ResourcePlan.to_json``)."""

    budget_bytes: int
    budget_given: bool
    device: str
    dtype: str
    stages: list[StageResources] = Field(default_factory=list)


class Plan(Section):
    """What the run decided to do before any work (``circuitwise.plan.Plan.to_json``)."""

    patching: list[str] = Field(default_factory=list)
    align: str = "auto"
    position_axis: str | None = None
    attribution: bool = False
    circuit: str | None = None
    degenerate: bool = False
    gap: Num = None
    resources: Resources | None = None  # absent in files written before the memory plan


class ProcessingStep(Section):
    name: str
    applied: bool
    reason: str | None = None


class Processing(Section):
    """The weight processing the model really has; ``steps`` is None where it was loaded elsewhere."""

    requested: bool
    steps: list[ProcessingStep] | None = None


class Fingerprint(Open):
    """Which model an output was computed on (``circuitwise.models.fingerprint``): architecture, shapes,
    the processing steps applied, dtype, and hashes of the checkpoint's and the processed weights. Open:
    later fields are kept."""

    architecture: str | None = None
    n_layers: int | None = None
    d_model: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    d_head: int | None = None
    d_mlp: int | None = None
    d_vocab: int | None = None
    processing: list[str] | None = None
    dtype: str | None = None
    weights_hash: str | None = None
    checkpoint_hash: str | None = None  # the weights as loaded, before processing (absent in older files)


class ModelInfo(Section):
    name: str
    n_layers: int
    n_heads: int
    d_model: int
    n_ctx: int
    device: str
    dtype: str = "float32"  # files written before --dtype existed computed in float32
    processing: Processing
    fingerprint: Fingerprint | None = None  # absent in files written before fingerprints


class Example(Section):
    clean: str
    correct: str
    incorrect: str
    corrupted: str | None = None
    tokens: list[str]


class TaskInfo(Section):
    name: str
    n_prompts: int
    n_dropped: int = 0
    dropped_reasons: list[str] = Field(default_factory=list)
    examples: list[Example]


class TopToken(Section):
    token: str
    id: int
    logit: float
    prob: float


class LogitDiff(Section):
    per_prompt: list[float]
    mean: float
    interval: Interval | None = None


class MetricValues(Section):
    """The run's metric per prompt, when it is not the logit difference."""

    name: str
    per_prompt: list[float]
    mean: float
    interval: Interval | None = None


class BaselineSection(Section):
    """The model's own answers on the clean prompts (``Baseline.to_json``)."""

    logit_diff: LogitDiff
    accuracy: float
    accuracy_interval: Interval | None = None
    answer_logits: list[list[float]]
    answer_probs: list[list[float]]
    correct_rank: list[int]
    top_k: list[list[TopToken]]
    metric: MetricValues | None = None  # the run's --metric, when not the logit difference


class Series(Section):
    labels: list[str]
    values: list[float]
    intervals: list[Interval | None] | None = None  # per value, over prompts (absent in older files)


class DLASection(Section):
    """Direct logit attribution (``DLA.to_json``): means over prompts, heads as [layer][head]."""

    final_resid: float
    final_resid_per_prompt: list[float]
    norm_bias: float = 0.0
    unembed_bias: float
    logit_diff: float
    target: Literal["logit_diff", "pre_cap_logit_diff"]
    closure_error: float
    dtype: str = "float32"
    rounding: float = 0.0
    linear: bool = True
    nonlinear: list[str] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list)
    logit_lens: Series
    layers: Series
    heads: list[list[float]]
    heads_per_prompt: list[list[list[float]]] | None = None


class HeadValue(Section):
    label: str
    layer: int
    head: int
    value: float
    interval: Interval | None = None  # of the head's mean direct effect over prompts


class TopHeads(Section):
    positive: list[HeadValue]
    negative: list[HeadValue]


class Attention(Section):
    """Attention patterns of some heads on one prompt: patterns[head][query][key]."""

    example: int
    tokens: list[str]
    heads: list[str]
    patterns: list[list[list[float]]]


class MechanismSource(Section):
    """A role or source position seen from the answer position (mean attention and pre-softmax score)."""

    key: str  # the role, or the position ("-1": the answer position, when counted from the end)
    attention: float
    score: Num  # null where a sliding window masks it in every prompt
    n: int  # prompts that have it
    token: str | None = None  # the token most often there, on token_count of those prompts
    token_count: int | None = None


class MechanismToken(Section):
    token: str
    id: int
    value: float


class MechanismWrite(Section):
    """What a head writes to the logits when it reads one token (attribution/mechanism.py: Write)."""

    reads: Literal["attended", "answer", "output"]
    input: Literal["residual", "embedding", "mixed", "head output"]
    top: list[MechanismToken]
    bottom: list[MechanismToken]
    z: Num  # the read token's z-score among all tokens' logits: the copying score
    rank: Num
    top_fraction: Num
    bottom_fraction: Num
    cosine: Num
    copies: bool
    suppresses: bool
    n: int


class MechanismHead(Section):
    """One head's read-out: what it reads from the answer position, its QK preference, its OV writes."""

    layer: int
    head: int
    label: str
    picked_by: list[str] = Field(default_factory=list)  # "dla+", "dla-", "patching"
    n_prompts: int
    positions_from: Literal["start", "end"]
    roles: list[MechanismSource]
    positions: list[MechanismSource]
    top_sources: list[MechanismToken]
    reads_role: str | None
    reads_position: str
    qk_role: str | None
    qk_position: str
    attended: str
    attended_fraction: float
    ov_attended: MechanismWrite
    ov_answer: MechanismWrite
    output: MechanismWrite


class MechanismSection(Section):
    """Mechanism read-outs of the run's top heads, on the first ``n_prompts`` of ``of`` prompts."""

    n_prompts: int
    of: int
    capped: bool
    copy_z: float
    # copies/suppresses also need the write's cosine with the token ≥ aimed/sqrt(d_model) (absent: older files)
    aimed: float | None = None
    heads: list[MechanismHead]


class Faithfulness(Section):
    faithfulness: Num
    kept_fraction: Num
    circuit_metric: float
    clean_metric: float
    corrupted_metric: float
    n_edges: int
    total_edges: int
    edge_fraction: float
    ablation: str
    per_example: list[Num]
    interval: Interval | None = None  # of the faithfulness: the ratio of resampled means


class Completeness(Section):
    completeness: Num
    complement: Faithfulness


class RandomBaseline(Section):
    circuit_faithfulness: Num
    n_edges: int
    random_mean: Num
    random_std: Num
    p_value: Num
    # Absent in files written before connected random circuits (their samples were uniform edge sets).
    p_value_is_bound: bool | None = None  # no sample reached the circuit: p < p_value = 1/(samples+1)
    hits: int | None = None
    samples: int | None = None
    null: str | None = None  # "connected": every edge of a random circuit on an input→logits path
    random_faithfulness: list[Num]


class Curve(Open):
    """Faithfulness over circuit size. Open: a later metric (area under the curve …) may add fields."""

    top: list[int]
    n_edges: list[int]
    faithfulness: list[Num]
    kept_fraction: list[Num]
    total_edges: int
    method: str
    ablation: str
    random_mean: list[Num] | None = None
    random_std: list[Num] | None = None


class AgreementEdge(Section):
    edge: str
    attribution: Num
    exact: Num


class Agreement(Section):
    method: str
    direction: str
    spearman: Num
    pearson: Num
    sign_agreement: Num
    edges: list[AgreementEdge]


class MIBCurve(Section):
    """Faithfulness at each of MIB's edge budgets for one ranking (``evaluation.mib.MIBCurve``)."""

    ranking: str
    top: list[int]
    n_edges: list[int]
    # MIB's printed count (its pinned prune stops after one pass; evaluation.mib.MIBCurve).
    mib_edge_count: list[int] | None = None
    circuit_metric: list[Num]
    faithfulness: list[Num]
    area_under: Num
    area_from_1: Num


class MIB(Open):
    """MIB's circuit-track metrics (``evaluation.mib.MIBResult``): CPR, CMD and their curves."""

    budgets: list[float]
    total_edges: int
    cpr: Num
    cmd: Num
    full_metric: Num
    empty_metric: Num
    method: str
    metric: str
    ablation: str
    n_examples: int
    curves: dict[str, MIBCurve]
    conventions: dict[str, str] = Field(default_factory=dict)
    cpr_interval: Interval | None = None
    cmd_interval: Interval | None = None


class Evaluation(Open):
    """A circuit's evaluation (``CircuitEvaluation.to_json``). Open for metrics added later."""

    faithfulness: Faithfulness
    completeness: Completeness
    random_baseline: RandomBaseline | None = None
    curve: Curve | None = None
    agreement: Agreement | None = None
    mib: MIB | None = None
    stability: Stability | None = None


class MethodConfig(Open):
    """The scoring method and the options it ran with (``circuits.registry``'s options, plus what the
    method records: ``interpolation``, ``n_scored`` …). Open: a method added later records its own."""

    method: str
    steps: int | None = None
    quadrature: str | None = None
    gradient: str | None = None
    direction: str | None = None
    interpolation: str | None = None


class Selection(Open):
    """How the circuit's edges were chosen. Open: each selection kind and method records its own fields."""

    kind: str
    by: str | None = None
    method_config: MethodConfig | None = None


class StableEdge(Section):
    sender: str
    receiver: str
    frequency: float  # share of bootstrap resamples whose re-selected circuit holds the edge
    # The edge's mean score on each block of prompts the resamples draw (per prompt when the blocks are
    # single prompts); circuit edges only, absent in older files and for contenders.
    scores: list[Num] | None = None
    # The edge's score on each prompt alone, in prompt order (gradient methods' circuit edges; absent in
    # older files, for contenders and for eap-ig-activations).
    prompt_scores: list[Num] | None = None


class Stability(Section):
    """Edge stability (``evaluation.stability.EdgeStability``): each circuit edge's selection frequency
    over bootstrap resamples of the prompts, and the outside edges resamples choose most often."""

    resamples: int
    groups: int  # blocks of prompts scored apart and resampled (= n_examples: a per-prompt bootstrap)
    n_examples: int
    seed: int
    rule: str  # how each resample re-selected its circuit
    seconds: float
    edges: list[StableEdge]
    contenders: list[StableEdge] = Field(default_factory=list)
    group_sizes: list[int] | None = None  # prompts in each block, in order (absent in older files)


class TopEdge(Section):
    sender: str
    receiver: str
    score: Num
    stability: Num = None  # selection frequency over resamples (absent in older files)


class CircuitAttention(Section):
    """What the circuit's heads attend to from the answer position on the first prompts (the explorer's
    attention panel): ``rows[head][prompt][key]``, keys as the prompt's tokens (``task.examples``)."""

    examples: list[int]
    heads: list[str]
    rows: list[list[list[float]]]
    of: int  # prompts in the run


class CircuitSection(Section):
    """The circuit of a run (the full circuit is in ``file``, circuit.json)."""

    method: str
    file: str
    n_edges: int
    total_edges: int
    selection: Selection
    scoring_seconds: float
    evaluation: Evaluation
    summary: list[str]
    top_edges: list[TopEdge]
    # Plotly figure JSON (``fig.to_json()``) of the circuit, curve and agreement, drawn as stored.
    figures: dict[str, dict[str, Any]] = Field(default_factory=dict)
    attention: CircuitAttention | None = None  # absent in older files


class RunResults(FileModel, Shows):
    """A whole run: ``cw.load_results(path)`` returns one; ``run(...)`` fills one."""

    show_name: ClassVar[str | None] = "results"

    FORMAT: ClassVar[str] = FORMAT
    VERSION: ClassVar[int] = VERSION
    FILENAME: ClassVar[str] = "results.json"
    REMEDY: ClassVar[str] = "Re-create it with `circuitwise run TASK --out DIR`."

    format: Literal["circuitwise.results"] = "circuitwise.results"
    schema_version: int = VERSION
    circuitwise_version: str
    complete: bool = False
    rerun: str
    plan: Plan
    notes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    model: ModelInfo
    task: TaskInfo
    baseline: BaselineSection | None = None
    dla: DLASection | None = None
    top_heads: TopHeads | None = None
    attention: Attention | None = None
    patching: dict[str, RunSweep] | None = None
    patching_attention: Attention | None = None
    patching_skipped: str | None = None
    circuit: CircuitSection | None = None
    mechanism: MechanismSection | None = None  # absent in files written before mechanism read-outs

    @classmethod
    def legacy(cls, data: dict[str, Any]) -> str | None:
        if "circuitwise_version" in data and "baseline" in data:
            return f"circuitwise {data['circuitwise_version']}"
        return None

    @classmethod
    def remedy_for(cls, data: dict[str, Any]) -> str:
        cmd = data.get("rerun")
        return f"Re-run it to write a current one: `{cmd}`." if isinstance(cmd, str) and cmd else cls.REMEDY

    # ---- display: a line for the terminal, the report's sections in a notebook ---------------------

    def headline(self) -> str:
        """One line with the key numbers."""
        parts = [f"{self.task.name} on {self.model.name}", f"{self.task.n_prompts} prompts"]
        if self.baseline is not None:
            ci = _bracket(self.baseline.logit_diff.interval, "{:+.2f}")
            parts.append(f"logit diff {self.baseline.logit_diff.mean:+.3f}{ci}, accuracy {self.baseline.accuracy:.0%}")
        if self.top_heads is not None and self.top_heads.positive:
            h = self.top_heads.positive[0]
            parts.append(f"top head {h.label} {h.value:+.3f}")
        if self.patching:
            parts.append(f"patching {', '.join(self.patching)}")
        if self.circuit is not None:
            fs = self.circuit.evaluation.faithfulness
            f = fs.faithfulness
            parts.append(f"circuit {self.circuit.n_edges}/{self.circuit.total_edges} edges, faithfulness "
                         + ("—" if f is None else f"{f:.2f}{_bracket(fs.interval, '{:.2f}')}"))
        if not self.complete:
            parts.append("incomplete")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"RunResults({self.headline()})"


def _bracket(iv: Interval | None, fmt: str) -> str:
    """`` [low, high]`` of an interval for a one-line headline; nothing for files without one."""
    if iv is None or iv.low is None or iv.high is None:
        return ""
    return f" [{fmt.format(iv.low)}, {fmt.format(iv.high)}]"


__all__ = [
    "Agreement", "AgreementEdge", "Attention", "BaselineSection", "CircuitAttention", "CircuitSection", "Completeness",
    "DLASection", "Evaluation", "Interval", "Example", "FORMAT", "Fingerprint", "MIB", "MIBCurve", "MethodConfig",
    "Faithfulness",
    "HeadValue", "LogitDiff", "MechanismHead", "MechanismSection", "MechanismSource", "MechanismToken",
    "MechanismWrite", "ModelInfo", "Plan", "Processing", "ProcessingStep", "RandomBaseline", "RunResults",
    "Selection", "StableEdge", "Stability",
    "Series", "TaskInfo", "TopEdge", "TopHeads", "TopToken", "VERSION",
]
