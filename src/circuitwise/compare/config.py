"""CompareConfig: everything `circuitwise compare` needs, the single home of its defaults.

The CLI derives its options (defaults and help) from the fields here, and every compare run
writes its config so it can be re-run exactly (`circuitwise compare --config DIR/config.yaml`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from circuitwise.config import (DEFAULT_BUILTIN_N, DEFAULT_RANDOM_SAMPLES, DEFAULT_TARGET, TARGET_RANGE, CommandConfig, DtypeName,
                                RunConfig, check_target, circuit_method_options)


class CompareConfig(CommandConfig):
    """Two sides — two tasks, one task on two models, or one task on two splits — and how to compare them."""

    COMMAND: ClassVar[str] = "compare"
    FLAGS: ClassVar[dict[str, str | None]] = {"a": "TASK A", "b": "TASK B", "min_difference": None,
                                              "circuit_options": "--circuit-option (-O)"}

    a: str = Field(description="Task A: a built-in task name (see `circuitwise tasks`) or a task file.")
    b: str | None = Field(None, description="Task B (default: task A, for two models or two splits).")
    model: str = Field("bundled", description="Model of side A (and of B unless --model-b): a Hub name, a local checkpoint folder, or 'bundled'.")
    model_b: str | None = Field(None, description="Model of side B (default: --model).")
    split_a: str | None = Field(None, description="Split of task A (e.g. train), for a built-in task with splits.")
    split_b: str | None = Field(None, description="Split of task B (e.g. heldout-template).")
    out: Path = Field(Path("runs/compare"), description="Output folder for compare.html, compare.json and config.yaml.")
    device: str | None = Field(None, description="cpu, cuda[:N] or mps; default: cuda, then mps, then cpu.")
    dtype: DtypeName = Field("auto", description=RunConfig.model_fields["dtype"].description)
    max_memory: str | None = Field(None, description=RunConfig.model_fields["max_memory"].description)
    device_map: Literal["auto", "balanced", "sequential"] | None = Field(None, description=RunConfig.model_fields["device_map"].description)
    n_devices: int | None = Field(None, ge=1, description=RunConfig.model_fields["n_devices"].description)
    batch_size: int | None = Field(None, ge=1, description="Prompts per forward pass; default: chosen from the model size.")
    processing: bool = Field(True, description="The seed's weight processing, as far as the architecture allows (as `run`).")
    n: int | None = Field(None, ge=1, description=f"Examples per side: for generated built-in tasks (default {DEFAULT_BUILTIN_N}); for task files, the first n.")
    seed: int = Field(0, description="Seed for generated built-in tasks (the same on both sides, so twins pair).")
    corruption: str | None = Field(None, description="Corruption scheme of the built-in tasks (both sides).")
    drop_invalid: bool | None = Field(None, description="Drop (and count) examples unusable with a tokenizer instead of stopping; a paired example dropped on one side is dropped on both. Default: on for built-in tasks.")
    pairing: Literal["auto", "paired", "unpaired"] = Field(
        "auto", description="auto: paired for the same prompts (two models) and for twin tasks (numbers-digits/"
        "numbers-words), unpaired otherwise; paired: pair example i of A with example i of B (checked); unpaired.")
    alpha: float = Field(0.05, gt=0, lt=1, description="False discovery rate of the Benjamini–Hochberg test over cells (heads, layers, lens points).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Coverage of the bootstrap confidence intervals.")
    bootstrap: int = Field(2000, ge=100, le=100_000, description="Bootstrap resamples for the confidence intervals.")
    permutations: int = Field(10_000, ge=100, le=1_000_000, description="Permutations of the tests (paired: all 2^n sign flips when that is fewer, an exact test).")
    min_difference: float = Field(1e-4, ge=0, description="Differences at most this large (logits, or patching's restored share) are float rounding and never flagged.")
    top_k: int = Field(3, ge=1, le=20, description="How many of the heads that differ most to show with their attention.")
    metric: str = Field("logit_diff", description=RunConfig.model_fields["metric"].description)
    patching: bool = Field(True, description="Run the 'heads' activation-patching sweep on each side and compare it.")
    circuit: str | None = Field("eap-ig", description="Circuit discovery method on each side (eap-ig, eap, exact), or none to skip circuits.")
    circuit_options: dict[str, Any] = Field(default_factory=dict,
                                            description=RunConfig.model_fields["circuit_options"].description)
    circuit_target: float = Field(DEFAULT_TARGET, description="Grow each circuit until it reaches this faithfulness, "
                                  f"in {TARGET_RANGE}.")
    circuit_level: Literal["edge", "node"] = Field("edge", description=RunConfig.model_fields["circuit_level"].description)
    ig_steps: int | None = Field(None, ge=1, le=100, description=RunConfig.model_fields["ig_steps"].description)
    random_samples: int = Field(DEFAULT_RANDOM_SAMPLES, ge=1, le=1000, description="Random connected circuits of each circuit's size, on each side (the baseline of cross-faithfulness; as many as `circuit`'s, so a p-value can fall below 0.01).")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        # config.yaml files written before one name per idea say random_circuits.
        if isinstance(data, dict) and "random_circuits" in data:
            data = dict(data)
            old = data.pop("random_circuits")
            if data.setdefault("random_samples", old) != old:
                raise ValueError("random_circuits (the old name) and random_samples disagree; give random_samples only")
        return data

    @field_validator("circuit_target")
    @classmethod
    def _a_target(cls, v: float) -> float:
        return check_target(v)

    @field_validator("circuit_level", mode="before")
    @classmethod
    def _a_level(cls, v: Any) -> Any:
        return RunConfig._a_level(v)

    @field_validator("metric")
    @classmethod
    def _a_metric(cls, v: str) -> str:
        return RunConfig._a_metric(v)

    @model_validator(mode="after")
    def _circuit_options_apply(self) -> "CompareConfig":
        self.method_options()  # an option the method does not have fails here, before any model is loaded
        return self

    def method_options(self) -> Any:
        """The circuit method's options object, with only the options it declares (None without circuits)."""
        return circuit_method_options(self.circuit, self.circuit_options, self.ig_steps)

    @property
    def task_b(self) -> str:
        return self.b if self.b is not None else self.a

    def side(self, which: Literal["a", "b"]) -> RunConfig:
        """Side A's or B's task and model as a RunConfig (what `run` would study)."""
        task, model, split = ((self.a, self.model, self.split_a) if which == "a"
                              else (self.task_b, self.model_b or self.model, self.split_b))
        return RunConfig.build(task=task, model=model, split=split, device=self.device, dtype=self.dtype, max_memory=self.max_memory,
                               device_map=self.device_map, n_devices=self.n_devices, batch_size=self.batch_size,
                               processing=self.processing, n=self.n, seed=self.seed, corruption=self.corruption,
                               drop_invalid=self.drop_invalid, out=self.out, metric=self.metric)


__all__ = ["CompareConfig"]
