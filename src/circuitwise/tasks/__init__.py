"""Stage 2: tasks — prompts, answers, corruptions — and their tokenization for a model."""

from circuitwise.tasks.builtin import REGISTRY, get_task
from circuitwise.tasks.task import Example, Task
from circuitwise.tasks.tokenize import TokenizedTask, tokenize_task

__all__ = ["REGISTRY", "Example", "Task", "TokenizedTask", "get_task", "tokenize_task"]
