"""Run configuration: the single home of defaults. The CLI derives its options from here, and
every run writes its config so it can be re-run exactly (`circuitwise run --config FILE`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from circuitwise.errors import ConfigError
from circuitwise.sizes import parse_size

DtypeName = Literal["auto", "float32", "bfloat16", "float16"]

# Exact patching a run may spend before it patches only the cells attribution ranks highest (at the
# nominal rate of the device, models.cost.NOMINAL_FLOPS, so the choice does not depend on the load).
EXACT_PATCHING_SECONDS = 40.0

# Generated built-in tasks hold thousands of examples; a run uses this many unless --n says otherwise.
DEFAULT_BUILTIN_N = 200

# Top edges confirmed by exact patching after discovery (`circuit`, `evaluate --shortlist`; 0 skips).
DEFAULT_SHORTLIST = 20
# Random connected circuits of a circuit's size that its faithfulness is compared with (run, circuit,
# evaluate). With k samples the smallest p-value is 1/(k+1): 100 lets p fall below 0.01. Connected
# circuits do not prune away, so each costs a patched forward (README, "Timings").
DEFAULT_RANDOM_SAMPLES = 100

# Bootstrap intervals over prompts of every headline number (evaluation.bootstrap): resamples,
# coverage and seed (the seed makes every interval reproducible). 1,000 resamples is the usual size
# for 95% percentile intervals; they cost one [1000, prompts] matrix product per statistic.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.95
BOOTSTRAP_SEED = 0

# Edge stability (evaluation.stability): the prompts are scored in this many contiguous blocks (the
# same FLOPs as one scoring pass in smaller batches) and the blocks are resampled, BOOTSTRAP_RESAMPLES
# times. Blocks, not single prompts: a call per prompt costs its overhead once per prompt (200 prompts
# on the bundled model: 6.6 s per prompt against 0.8 s for 20 blocks). A task with fewer prompts is
# resampled prompt by prompt.
STABILITY_GROUPS = 20

# Mechanism read-outs (attribution.mechanism) of the run's top heads read the first this many prompts in
# one cached forward per batch: they describe what a head reads and writes, and their cost (patterns and
# scores of the heads' layers) stays bounded on large tasks; the run notes when it caps. They list this
# many top tokens and source tokens per head.
MECHANISM_PROMPTS = 64
MECHANISM_TOP_TOKENS = 5

# The circuit explorer shows its heads' attention from the answer position on this many first prompts,
# as many as the report's table of prompts lists (one row of T weights per head and prompt, from one
# forward per batch: about 1 MB of results.json for 30 heads at 15 tokens).
EXPLORER_PROMPTS = 200

# `patch`'s sweeps when --patch is not given: the two position-free-or-token-aligned sweeps that apply to
# any task with corrupted prompts (`run` adds heads_by_pos, which its plan can align or skip).
PATCH_SWEEPS = ("resid_pre", "heads")

# A target faithfulness is a share of the clean–corrupted gap that the circuit restores; selection
# (circuits.select.select_target) grows a circuit towards it and accepts (0, 1], so every config does too.
TARGET_RANGE = "(0, 1]"
DEFAULT_TARGET = 0.9

# The methods whose `steps` option is the number of integration points (edge pruning's are training steps).
IG_METHODS = ("eap-ig", "eap-ig-activations")


def check_target(value: float) -> float:
    """``value`` if it is a usable target faithfulness, else a ValueError that names the valid range."""
    if not 0 < value <= 1:
        raise ValueError(f"must be in {TARGET_RANGE} (the share of the clean–corrupted gap the circuit "
                         f"restores; {DEFAULT_TARGET} is usual), got {value}")
    return value


def circuit_method_options(circuit: str | None, circuit_options: dict[str, Any], ig_steps: int | None) -> Any:
    """The circuit method's options object (None without a circuit stage), or a ConfigError before any work.

    Only the options the method declares are passed (its options dataclass in circuits.registry); an
    option that does not apply to the method — ig_steps for eap or edge-pruning, whose ``steps`` are
    training steps — is refused, never passed on or swallowed.
    """
    from circuitwise.circuits.methods import get_method

    extra = {} if ig_steps is None else {"steps": ig_steps}
    if not circuit:
        if circuit_options or extra:
            raise ConfigError("circuit_options / ig_steps are set but no circuit method is; name one "
                              "(circuit: eap-ig) or drop them.")
        return None
    if extra and "steps" in circuit_options and circuit_options["steps"] != ig_steps:
        raise ConfigError(f"ig_steps ({ig_steps}) and circuit_options steps ({circuit_options['steps']}) "
                          "disagree; give one of them.")
    method = get_method(circuit)
    if extra and method.name not in IG_METHODS:
        raise ConfigError(f"ig_steps applies to the integrated-gradient methods ({', '.join(IG_METHODS)}), not "
                          f"{circuit}; drop --ig-steps (a config.yaml from circuitwise 0.1 carries ig_steps: 5 — "
                          "delete that line).")
    return method.options(circuit_options, **extra)



class CommandConfig(BaseModel):
    """A command's whole configuration: frozen, no unknown options, and written to config.yaml so the
    command can be re-run exactly (``--config DIR/config.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: The command configured (``run``, ``compare``), as its errors name it.
    COMMAND: ClassVar[str]
    #: The flag (or argument) of each field whose name is not ``--`` + the field with dashes; ``None``:
    #: a config.yaml key with no flag.
    FLAGS: ClassVar[dict[str, str | None]] = {}

    @classmethod
    def option_name(cls, field: str) -> str:
        """How errors name a field: its flag, with the config.yaml key beside it where it is not the flag's
        name (the same config comes from flags and from ``--config``)."""
        plain = "--" + field.replace("_", "-")
        flag = cls.FLAGS.get(field, plain) if field in cls.model_fields else None
        return field if flag is None else flag if flag == plain else f"{flag} ({field} in config.yaml)"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, path: Path) -> Self:
        fix = (f"Give the config.yaml an earlier {cls.COMMAND} wrote (circuitwise {cls.COMMAND} … --out DIR writes "
               "DIR/config.yaml).")
        data = read_yaml_mapping(path, fix)
        keys = {str(k) for k in data}
        if keys - set(cls.model_fields):
            # Another command's config.yaml (run's given to compare): said as such, not as a list of its fields.
            for other in CommandConfig.__subclasses__():
                if other is not cls and not keys - set(other.model_fields):
                    raise ConfigError(f"{path} is a config.yaml of `circuitwise {other.COMMAND}`, not of "
                                      f"{cls.COMMAND}. Re-run it with `circuitwise {other.COMMAND} --config {path}`.")
        return cls.build(**{str(k): v for k, v in data.items()})

    @classmethod
    def build(cls, *, for_command: str | None = None, **kwargs: Any) -> Self:
        """Construct, turning validation failures into a ConfigError that names the option and the
        command whose options these are (``for_command``: another command that loads through this config)."""
        try:
            return cls(**kwargs)
        except ValidationError as e:
            command = for_command or cls.COMMAND
            raise ConfigError(f"Invalid {command} configuration: {problems_of(e, cls.option_name)}. "
                              f"See `circuitwise {command} --help`.") from None


class RunConfig(CommandConfig):
    """Everything `circuitwise run` needs. Field descriptions are the CLI's help texts."""

    COMMAND: ClassVar[str] = "run"
    FLAGS: ClassVar[dict[str, str | None]] = {"task": "TASK", "patching": "--patch",
                                              "circuit_options": "--circuit-option (-O)"}

    task: str = Field(description="Built-in task name (see `circuitwise tasks`) or a .jsonl/.csv/.yaml file.")
    model: str = Field("bundled", description="Hub name (gpt2, EleutherAI/pythia-70m), local checkpoint folder, or 'bundled'.")
    out: Path = Field(Path("runs/latest"), description="Output folder for report.html, results.json and config.yaml.")
    device: str | None = Field(None, description="cpu, cuda[:N] or mps; default: cuda, then mps, then cpu.")
    dtype: DtypeName = Field(
        "auto", description="Precision of the weights and activations: auto (the checkpoint's dtype on a GPU, float32 "
        "on a CPU), float32, bfloat16 or float16. Long sums (softmax, norm statistics, scores over prompts) "
        "accumulate in float32 either way."
    )
    batch_size: int | None = Field(None, ge=1, description="Prompts per forward pass; default: chosen from the model size.")
    device_map: Literal["auto", "balanced", "sequential"] | None = Field(
        None, description="Split the model over the visible devices (TransformerLens's device_map; instead of "
        "--device). The engines follow each block's device, with the same numbers as one device."
    )
    n_devices: int | None = Field(None, ge=1, description="Split the model over this many CUDA devices.")
    max_memory: str | None = Field(
        None, description="Memory the run may use (8GB, 500MiB, …): batch sizes are chosen to fit it, and a run "
        "that cannot fit one prompt is refused before any work. Default: the device's free memory (RAM on a CPU) "
        "less 15%."
    )
    processing: bool = Field(True, description="The seed's weight processing (fold norms, centre weights and unembedding, refactor QK/OV) as far as the architecture allows; the steps skipped are shown.")
    top_k: int = Field(3, ge=1, le=50, description="How many top positive and negative heads to show.")
    n: int | None = Field(
        None, ge=1, description=f"Number of examples: for generated built-in tasks (default {DEFAULT_BUILTIN_N}); "
        "for task files, the first n (default all)."
    )
    seed: int = Field(0, description="Seed for generated built-in tasks.")
    corruption: str | None = Field(
        None, description="Corruption scheme of a built-in task (opposites: flip, connective, other; ioi: abc)."
    )
    split: str | None = Field(None, description="Split of a built-in task (e.g. heldout-pair).")
    patching: tuple[str, ...] = Field(
        ("resid_pre", "heads", "heads_by_pos"),
        description="Activation-patching sweeps to run when the task has corrupted prompts "
        "(resid_pre, attn_out, mlp_out, heads, heads_by_pos, head_q, head_k, head_v, head_pattern); "
        "empty to skip.",
    )
    align: Literal["auto", "token", "role", "end"] = Field(
        "auto", description="Position axis of the sweeps by position: token (prompts of one length), role "
        "(the task's roles), end (positions counted from each prompt's last token), or auto (token when the "
        "prompts have one length, else role; without roles, only the sweeps without positions run).",
    )
    metric: str = Field(
        "logit_diff", description="What every stage measures at the answer position: logit_diff (correct − incorrect "
        "logit), prob or logprob of the correct answer, or kl (KL divergence of the next-token distribution from "
        "the clean run's; 0 = clean). Baseline, patching, discovery and faithfulness use it; DLA and the logit lens "
        "decompose the logit difference whatever it is (the others are not linear in the residual)."
    )
    attribution: bool = Field(True, description="Also run attribution patching and show its agreement with the exact sweeps.")
    exhaustive: bool = Field(
        False, description="Patch every cell exactly, however long it takes. Default: when every cell would take "
        f"more than about {EXACT_PATCHING_SECONDS:.0f} s, every cell gets its attribution estimate and the cells "
        "attribution ranks highest are patched exactly (the plan and the report say which)."
    )
    circuit: str | None = Field(
        "eap-ig", description="Circuit discovery method when the task has corrupted prompts: eap-ig, eap, "
        "eap-ig-activations, exact (small models only), edge-pruning, acdc, relp, bootstrap, or none to skip."
    )
    circuit_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the circuit method, defaults from its options dataclass "
        "(README, 'Edge-score conventions'): eap {gradient: clean|corrupted}; eap-ig and eap-ig-activations "
        "{steps: N, quadrature: right|left|midpoint|trapezoid}; exact {direction: noise|denoise}."
    )
    circuit_target: float = Field(
        DEFAULT_TARGET, description=f"Grow the circuit until it reaches this faithfulness, in {TARGET_RANGE} "
        "(share of the clean–corrupted logit-difference gap it restores)."
    )
    circuit_level: Literal["edge", "node"] = Field(
        "edge", description="What the circuit is chosen as: edges, or nodes (heads and MLPs by their node score, "
        "kept as their edge circuit; README, 'Node and neuron level')."
    )
    ig_steps: int | None = Field(None, ge=1, le=100, description="Integration steps of EAP-IG and EAP-IG-activations "
                                 "(default 5; the same as circuit_options steps).")
    drop_invalid: bool | None = Field(
        None,
        description="Drop (and count) examples unusable with this tokenizer instead of stopping. "
        "Default: on for built-in tasks, off for task files.",
    )

    @field_validator("circuit_target")
    @classmethod
    def _a_target(cls, v: float) -> float:
        return check_target(v)

    @field_validator("circuit_level", mode="before")
    @classmethod
    def _a_level(cls, v: Any) -> Any:
        if v == "neuron":  # MIB's level, which `mib` and circuits.neurons have: say where
            from circuitwise.circuits.node_select import NEURON_LEVEL

            raise ValueError(NEURON_LEVEL)
        return v

    @field_validator("metric")
    @classmethod
    def _a_metric(cls, v: str) -> str:
        from circuitwise.metrics import METRICS

        if v not in METRICS:
            raise ValueError(f"must be one of {', '.join(METRICS)}")
        return v

    @field_validator("max_memory")
    @classmethod
    def _a_size(cls, v: str | None) -> str | None:
        if v is not None:
            parse_size(v)  # ValueError → the option's name and the accepted forms
        return v

    @property
    def max_memory_bytes(self) -> int | None:
        return None if self.max_memory is None else parse_size(self.max_memory)

    @model_validator(mode="after")
    def _one_placement(self) -> "RunConfig":
        if self.device is not None and (self.device_map is not None or self.n_devices is not None):
            raise ValueError("--device and --device-map/--n-devices exclude each other; give one")
        return self

    @model_validator(mode="after")
    def _circuit_options_apply(self) -> "RunConfig":
        self.method_options()  # an option the method does not have fails here, before any work
        return self

    def method_options(self) -> Any:
        """The circuit method's options object (None without a circuit stage)."""
        return circuit_method_options(self.circuit, self.circuit_options, self.ig_steps)

    def task_options(self, builtin: bool) -> dict[str, Any]:
        opts: dict[str, Any] = {"seed": self.seed}
        if builtin and self.n is None:
            opts["n"] = DEFAULT_BUILTIN_N
        for key in ("n", "corruption", "split"):
            if getattr(self, key) is not None:
                opts[key] = getattr(self, key)
        return opts


def problems_of(e: ValidationError, name: Callable[[str], str] | None = None) -> str:
    """A validation failure as 'option: what is wrong' clauses (pydantic's 'Value error, ' prefix dropped);
    ``name`` renders a top-level field (a command's flag)."""
    def where(loc: tuple[Any, ...]) -> str:
        if not loc:
            return "config"
        head = name(str(loc[0])) if name is not None and isinstance(loc[0], str) else str(loc[0])
        return ".".join([head, *(str(p) for p in loc[1:])])

    return "; ".join(f"{where(tuple(err['loc']))}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors())


def read_yaml_mapping(path: Path, fix: str) -> dict[str, Any]:
    """A config file's options as a mapping, or a ConfigError that ends with ``fix``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist. {fix}") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a folder. {fix}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"Config file {path} is not UTF-8 text ({e.reason} at byte {e.start}). {fix}") from None
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror or e}. {fix}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"Config file {path} is not valid YAML: {e}") from None
    except (RecursionError, ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"Config file {path} is not usable YAML ({type(e).__name__}). {fix}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} holds a YAML {type(data).__name__}, not a mapping of options "
                          f"(task: …, model: …). {fix}")
    return data


def default_batch_size(model: Any) -> int:
    """Prompts per forward: keep a batch's activations around a few hundred MB."""
    d = model.cfg.d_model * model.cfg.n_layers
    return max(1, min(64, int(2_000_000 / max(d, 1))))


__all__ = ["BOOTSTRAP_LEVEL", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "DEFAULT_BUILTIN_N", "DEFAULT_RANDOM_SAMPLES", "DEFAULT_SHORTLIST", "DEFAULT_TARGET", "EXACT_PATCHING_SECONDS", "EXPLORER_PROMPTS", "IG_METHODS", "MECHANISM_PROMPTS", "MECHANISM_TOP_TOKENS", "STABILITY_GROUPS",
           "PATCH_SWEEPS", "TARGET_RANGE", "DtypeName", "RunConfig", "check_target", "circuit_method_options",
           "default_batch_size", "problems_of", "read_yaml_mapping"]
