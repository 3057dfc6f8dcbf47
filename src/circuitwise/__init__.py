"""circuitwise: find, test and explain the circuits behind a language model's answer.

The public API is what ``__all__`` lists; everything else may change between versions.
"""

from circuitwise.errors import CircuitwiseError
from circuitwise.models import load_model
from circuitwise.tasks import Example, Task, get_task, tokenize_task

__version__ = "0.1.0"

__all__ = ["CircuitwiseError", "Example", "Task", "__version__", "get_task", "load_model", "tokenize_task"]
