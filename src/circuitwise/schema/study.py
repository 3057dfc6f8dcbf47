"""``evaluation.json`` and ``scores.json``: what `circuitwise circuit` / `evaluate` write beside circuit.json.

``evaluation.json`` is a circuit's evaluation (the same sections as results.json's
``circuit.evaluation``) plus what the command adds (``scoring_seconds``, ``n_examples``);
``scores.json`` is every edge's score with the method's options (``EdgeScores.to_json``). Both are
open at the top level, as circuit.json is, so a metric or field a later method adds is kept.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

from pydantic import Field

from circuitwise.schema.base import FileModel, Num, Open, Section
from circuitwise.schema.circuit import CircuitModel, GraphInfo
from circuitwise.schema.results import MIB, Agreement, Completeness, Curve, Faithfulness, RandomBaseline, Stability

EVALUATION_FORMAT: Final = "circuitwise.evaluation"
SCORES_FORMAT: Final = "circuitwise.scores"
VERSION = 1


class EvaluationFile(FileModel):
    FORMAT: ClassVar[str] = EVALUATION_FORMAT
    VERSION: ClassVar[int] = VERSION
    FILENAME: ClassVar[str] = "evaluation.json"
    REMEDY: ClassVar[str] = ("Re-create it with `circuitwise circuit TASK --out DIR` or "
                             "`circuitwise evaluate ... --out DIR`.")

    model_config = Open.model_config

    format: Literal["circuitwise.evaluation"] = EVALUATION_FORMAT
    schema_version: int = VERSION
    faithfulness: Faithfulness
    completeness: Completeness
    random_baseline: RandomBaseline | None = None
    curve: Curve | None = None
    agreement: Agreement | None = None
    mib: MIB | None = None
    stability: Stability | None = None  # `circuitwise circuit` with a gradient method
    # Added by `circuitwise circuit` (not by `evaluate`, which scores nothing).
    scoring_seconds: Num = None
    n_examples: int | None = None
    # circuit.html's figures as plotly JSON, so `circuitwise figures` exports them from the files alone
    # (written since circuitwise 0.3; absent in older files).
    figures: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # The model the evaluation was measured on, with its fingerprint (absent in older files).
    model: CircuitModel | None = None


class TopScore(Section):
    edge: str
    score: Num


class ScoresFile(FileModel):
    FORMAT: ClassVar[str] = SCORES_FORMAT
    VERSION: ClassVar[int] = VERSION
    FILENAME: ClassVar[str] = "scores.json"
    REMEDY: ClassVar[str] = "Re-create it with `circuitwise circuit TASK --out DIR`."

    model_config = Open.model_config

    format: Literal["circuitwise.scores"] = SCORES_FORMAT
    schema_version: int = VERSION
    method: str
    metric: str
    # The method's own options (method-specific, hence open).
    config: dict[str, Any] = Field(default_factory=dict)
    clean_metric: Num = None
    corrupted_metric: Num = None
    n_examples: int
    seconds: Num = None
    graph: GraphInfo
    top: list[TopScore]
    # Every edge's name and score, in the graph's order (left out by ``to_json(all_edges=False)``).
    edges: list[str] | None = None
    scores: list[Num] | None = None
    # The model the edges were scored on, with its fingerprint (absent in older files).
    model: CircuitModel | None = None


__all__ = ["EVALUATION_FORMAT", "EvaluationFile", "SCORES_FORMAT", "ScoresFile", "TopScore", "VERSION"]
