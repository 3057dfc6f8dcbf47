"""Stage 8: evaluation — faithfulness, completeness, the faithfulness curve and baselines."""

from circuitwise.evaluation.baselines import Agreement, RandomBaseline, random_baseline, shortlist_agreement
from circuitwise.evaluation.curve import FaithfulnessCurve, faithfulness_curve
from circuitwise.evaluation.evaluate import CircuitEvaluation, evaluate_circuit
from circuitwise.evaluation.faithfulness import Completeness, Faithfulness, completeness, faithfulness
from circuitwise.evaluation.figures import agreement_figure, faithfulness_curve_figure
from circuitwise.evaluation.stability import EdgeStability, edge_stability
from circuitwise.evaluation.stats import spearman

__all__ = [
    "Agreement", "CircuitEvaluation", "Completeness", "EdgeStability", "Faithfulness", "FaithfulnessCurve",
    "RandomBaseline",
    "agreement_figure", "completeness", "edge_stability", "evaluate_circuit", "faithfulness", "faithfulness_curve",
    "faithfulness_curve_figure", "random_baseline", "shortlist_agreement", "spearman",
]
