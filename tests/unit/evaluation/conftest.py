"""The evaluation tests use the circuit tests' fixtures (seed task, tiny/small tokenizations, known-circuit model)."""

from tests.unit.circuits.conftest import (  # noqa: F401
    known_ckpt,
    known_model,
    known_tok,
    seed_task,
    small_tok,
    tiny_tok,
)
