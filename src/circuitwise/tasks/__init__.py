"""Stage 2: tasks — prompts, answers, corruptions — and their tokenization for a model."""

from circuitwise.tasks.builtin import REGISTRY, get_task
from circuitwise.tasks.task import Example, Task
from circuitwise.tasks.tokenize import Dropped, TokenizedTask, describe_dropped, tokenize_task
from circuitwise.tasks.tokenizer import TokenizerModel, load_tokenizer

__all__ = [
    "REGISTRY", "Dropped", "Example", "Task", "TokenizedTask", "TokenizerModel", "describe_dropped",
    "get_task", "load_tokenizer", "tokenize_task",
]
