"""The two sides of a comparison: their tasks, the pairing decision, their models, tokenized.

All of it happens before any analysis, so a task that does not exist, a pairing that does not
hold or a model that does not load stops the command before anything is computed or written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from circuitwise.circuits.methods import check_prompts
from circuitwise.compare.config import CompareConfig
from circuitwise.compare.pairing import PairingDecision, are_twins, decide_pairing
from circuitwise.config import RunConfig
from circuitwise.errors import TaskError
from circuitwise.models import load_model
from circuitwise.models.loading import check_loadable, check_stages_fit
from circuitwise.models.memory import Stage, refuse_unless_fits
from circuitwise.models.processing import notes_of as processing_notes
from circuitwise.tasks import get_task, tokenize_task
from circuitwise.tasks.builtin import specs
from circuitwise.tasks.task import Task
from circuitwise.tasks.tokenize import Dropped, TokenizedTask, describe_dropped

log = logging.getLogger(__name__)
Say = Callable[[str], None]
# A Dropped kind reads as a count's phrase ("3 whose twin … is unusable").
TWIN_GONE = "whose twin on the other side is unusable"


@dataclass(frozen=True)
class Loaded:
    """One side, ready to analyse. ``n_total``: examples before any was dropped."""

    which: str
    label: str
    run: RunConfig
    model: Any
    tok: TokenizedTask
    dropped: list[Dropped]
    builtin: bool
    n_total: int


def _builtin(name: str) -> bool:
    return name in {s.name for s in specs()}


def _task(cfg: RunConfig) -> Task:
    builtin = _builtin(cfg.task)
    opts = cfg.task_options(builtin)
    if not builtin:  # compare's --corruption is the built-in side's; a file brings its own
        opts.pop("corruption", None)
    return get_task(cfg.task, **opts)


# How compare leaves out a stage that does not fit (named first in a memory refusal, as run's RUN_SKIPS).
COMPARE_SKIPS: dict[Stage, str] = {
    "patching": "--no-patching (no patching sweep)",
    "edges": "--circuit none (no circuits)",
    "evaluation": "--circuit none (no circuits)",
}


def _labels(config: CompareConfig, a: Task, b: Task) -> tuple[str, str]:
    la, lb = a.name, b.name
    ma, mb = config.model, config.model_b or config.model
    if ma != mb:
        la, lb = (f"{la} on {ma}", f"{lb} on {mb}") if la != lb else (ma, mb)
    if la == lb:
        la, lb = f"{la} (A)", f"{lb} (B)"
    return la, lb


def load_sides(config: CompareConfig, *, tasks: tuple[Task, Task] | None = None,
               models: tuple[Any, Any] | None = None, say: Say, notes: Say,
               need_corrupted: bool) -> tuple[Loaded, Loaded, PairingDecision]:
    """Both sides' tasks, the pairing (decided and verified), the models, and the tokenized tasks."""
    ra, rb = config.side("a"), config.side("b")
    ta, tb = tasks if tasks is not None else (_task(ra), _task(rb))
    decision = decide_pairing(ta, tb, config.pairing, twins=are_twins(ta.name, tb.name))
    if models is not None:
        ma, mb = models
    else:
        # Side B's model is checked before side A's loads: a mistyped folder or an unreachable Hub name
        # for B failed only once A's model had loaded.
        for name in dict.fromkeys((ra.model, rb.model)):
            check_loadable(name)
        # Each side's stages must fit beside its model: both checked from the checkpoints' shapes before either
        # loads (the plan checks again at the prompts' real length once they are tokenized).
        patched = need_corrupted and ta.has_corrupted and tb.has_corrupted and config.patching
        sure: tuple[Stage, ...] = ("baseline", "dla") + (("patching",) if patched else ())
        for side, cfg in (("A", ra), ("B", rb)):
            check_stages_fit(cfg.model, sure, device=config.device, dtype=cfg.dtype, max_memory=cfg.max_memory_bytes,
                             processing=config.processing,
                             split=cfg.device_map is not None or cfg.n_devices is not None,
                             what=f"Side {side} of the comparison", skips=COMPARE_SKIPS)
        say(f"loading model {ra.model}")
        ma = load_model(ra.model, device=config.device, processing=config.processing, dtype=ra.dtype,
                        max_memory=ra.max_memory_bytes, device_map=ra.device_map, n_devices=ra.n_devices)
        for n in processing_notes(ma):
            notes(n)
        if rb.model == ra.model:
            mb = ma
        else:
            say(f"loading model {rb.model}")
            mb = load_model(rb.model, device=config.device, processing=config.processing, dtype=rb.dtype,
                            max_memory=rb.max_memory_bytes, device_map=rb.device_map, n_devices=rb.n_devices)
            for n in processing_notes(mb):
                notes(f"{rb.model}: {n}")
    builtin = (_builtin(ra.task) if tasks is None else False, _builtin(rb.task) if tasks is None else False)
    corrupted = need_corrupted and ta.has_corrupted and tb.has_corrupted
    toks = []
    for task, model, cfg, is_builtin in ((ta, ma, ra, builtin[0]), (tb, mb, rb, builtin[1])):
        drop = cfg.drop_invalid if cfg.drop_invalid is not None else is_builtin
        toks.append(tokenize_task(model, task, on_invalid="drop" if drop else "raise", need_corrupted=corrupted))
    (tok_a, drop_a), (tok_b, drop_b) = toks
    if decision.paired:
        tok_a, tok_b, drop_a, drop_b = _keep_pairs(ta, tb, ma, mb, drop_a, drop_b, corrupted, say)
    for task, dropped in ((ta, drop_a), (tb, drop_b)):
        if dropped:
            message = describe_dropped(dropped, len(task), task.name)
            log.warning(message)
            say(message)
    # One prompt of each side must fit beside its model in every stage the comparison runs.
    stages: tuple[Stage, ...] = ("baseline", "dla") + (("patching",) if corrupted and config.patching else ()) \
        + (("edges", "evaluation") if corrupted and config.circuit else ())
    for side, model, tok in (("A", ma, tok_a), ("B", mb, tok_b)):
        if len(tok):
            refuse_unless_fits(stages, model, int(tok.clean.shape[1]), what=f"Side {side} of the comparison",
                               skips=COMPARE_SKIPS)
            if corrupted and config.circuit:
                check_prompts(config.circuit, model, tok, config.method_options())
    la, lb = _labels(config, ta, tb)
    return (Loaded("a", la, ra, ma, tok_a, drop_a, builtin[0], len(ta)),
            Loaded("b", lb, rb, mb, tok_b, drop_b, builtin[1], len(tb)), decision)


def _keep_pairs(ta: Task, tb: Task, ma: Any, mb: Any, drop_a: list[Dropped], drop_b: list[Dropped],
                corrupted: bool, say: Say) -> tuple[TokenizedTask, TokenizedTask, list[Dropped], list[Dropped]]:
    """Pairs stay whole: an example dropped on one side is dropped on the other, and said so."""
    gone_a, gone_b = {d.index for d in drop_a}, {d.index for d in drop_b}
    if gone_a == gone_b:
        return *_retok(ta, tb, ma, mb, gone_a, corrupted), drop_a, drop_b
    keep = [i for i in range(len(ta)) if i not in gone_a | gone_b]
    if not keep:
        raise TaskError(f"No pair of examples is usable on both sides: every example is unusable with side A's or "
                        f"side B's tokenizer (first reason: {(drop_a or drop_b)[0].reason}).")
    extra_a = [Dropped(i, "its twin on side B is unusable there", TWIN_GONE) for i in sorted(gone_b - gone_a)]
    extra_b = [Dropped(i, "its twin on side A is unusable there", TWIN_GONE) for i in sorted(gone_a - gone_b)]
    say(f"note: {len(extra_a) + len(extra_b)} example(s) unusable on one side only were dropped on both, "
        "so the pairs stay whole.")
    tok_a, tok_b = _retok(ta, tb, ma, mb, gone_a | gone_b, corrupted)
    return tok_a, tok_b, sorted(drop_a + extra_a, key=lambda d: d.index), sorted(drop_b + extra_b, key=lambda d: d.index)


def _retok(ta: Task, tb: Task, ma: Any, mb: Any, gone: set[int], corrupted: bool) -> tuple[TokenizedTask, TokenizedTask]:
    keep = [i for i in range(len(ta)) if i not in gone]
    out = []
    for task, model in ((ta, ma), (tb, mb)):
        sub = task.subset(keep) if gone else task
        out.append(tokenize_task(model, sub, on_invalid="raise", need_corrupted=corrupted)[0])
    return out[0], out[1]


__all__ = ["Loaded", "load_sides"]
