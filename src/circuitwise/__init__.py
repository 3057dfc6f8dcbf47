"""circuitwise: find, test and explain the circuits behind a language model's answer.

The public API is what ``__all__`` lists, one name per pipeline stage; everything else may change
between versions. ``run(RunConfig(...))`` is the whole study; the functions below are its stages.
"""

from circuitwise import reports as _reports  # noqa: F401 - imported to register every result's notebook renderer
from circuitwise.attribution import baseline, direct_logit_attribution
from circuitwise.circuits import find_circuit
from circuitwise.compare import CompareConfig, compare
from circuitwise.config import RunConfig
from circuitwise.errors import CircuitwiseError
from circuitwise.evaluation import evaluate_circuit
from circuitwise.models import load_model
from circuitwise.patching import activation_patching, attribution_patching
from circuitwise.pipeline import run
from circuitwise.schema import load_results
from circuitwise.tasks import Example, Task, get_task, tokenize_task

__version__ = "0.1.0"

__all__ = [
    "CircuitwiseError",
    "CompareConfig",
    "Example",
    "RunConfig",
    "Task",
    "__version__",
    "activation_patching",
    "attribution_patching",
    "baseline",
    "compare",
    "direct_logit_attribution",
    "evaluate_circuit",
    "find_circuit",
    "get_task",
    "load_results",
    "load_model",
    "run",
    "tokenize_task",
]
