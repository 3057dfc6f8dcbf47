"""Turn a :class:`Task` into tensors for one model, checking it against that model's tokenizer.

Prompts are right-padded. With causal attention and absolute or rotary positions, right padding
never changes the activations of real tokens, so each prompt is read at its own last token
(``last``) and the result equals running it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator, Literal

import torch

from circuitwise.errors import NoUsableExamples, TaskError
from circuitwise.tasks.task import Example, Task


@dataclass(frozen=True)
class TokenizedTask:
    """A task as tensors for one model. Rows are examples; ``last[i]`` is row i's final token."""

    task: Task
    clean: torch.Tensor  # [batch, pos] int64, right-padded
    corrupted: torch.Tensor | None  # [batch, pos] or None
    answers: torch.Tensor  # [batch, 2]: correct id, incorrect id
    last: torch.Tensor  # [batch] index of the final real token
    str_tokens: tuple[tuple[str, ...], ...]  # clean prompt tokens, unpadded
    corrupted_str_tokens: tuple[tuple[str, ...], ...] | None
    roles: tuple[dict[str, int], ...] | None  # role -> token position, per example
    pad_id: int
    # What a vocabulary metric reads besides the answers (metrics.targets_of): every logit, and for
    # kl the clean run's next-token log-probabilities [batch, vocab]. Set by metrics.prepared_for
    # for the metric in use; sliced and moved with the rows.
    vocab: bool = False
    reference: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.clean.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        return self.last + 1

    @property
    def same_length(self) -> bool:
        return bool((self.last == self.last[0]).all())

    def batches(self, batch_size: int) -> Iterator["TokenizedTask"]:
        """Consecutive slices of at most ``batch_size`` examples, each trimmed to its own width."""
        for start in range(0, len(self), batch_size):
            yield self.slice(start, min(start + batch_size, len(self)))

    def slice(self, start: int, stop: int) -> "TokenizedTask":
        width = int(self.last[start:stop].max()) + 1
        return replace(
            self,
            task=self.task.subset(range(start, stop)),
            clean=self.clean[start:stop, :width],
            corrupted=None if self.corrupted is None else self.corrupted[start:stop, :width],
            answers=self.answers[start:stop],
            last=self.last[start:stop],
            str_tokens=self.str_tokens[start:stop],
            corrupted_str_tokens=None
            if self.corrupted_str_tokens is None
            else self.corrupted_str_tokens[start:stop],
            roles=None if self.roles is None else self.roles[start:stop],
            reference=None if self.reference is None else self.reference[start:stop],
        )

    def to(self, device: torch.device | str) -> "TokenizedTask":
        return replace(
            self,
            clean=self.clean.to(device),
            corrupted=None if self.corrupted is None else self.corrupted.to(device),
            answers=self.answers.to(device),
            last=self.last.to(device),
            reference=None if self.reference is None else self.reference.to(device),
        )


@dataclass(frozen=True)
class Dropped:
    """An example left out by ``on_invalid="drop"``, and why.

    ``kind`` groups reasons for counting: ``answer-tokens`` (an answer is not one token),
    ``corrupted-length`` (clean and corrupted prompts differ in length), ``same-answer``,
    ``too-long``, ``no-corrupted``, ``role`` or ``other``.
    """

    index: int
    reason: str
    kind: str = "other"


class InvalidExample(TaskError):
    """An example unusable with one tokenizer; ``kind`` is as in :class:`Dropped`."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def describe_dropped(dropped: list[Dropped], total: int, task_name: str = "task") -> str:
    """One line for the user: how many examples were dropped, and why, counted by kind."""
    if not dropped:
        return f"{task_name}: all {total} examples are usable with this tokenizer."
    counts: dict[str, int] = {}
    for d in dropped:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    why = ", ".join(f"{v} {_KIND_TEXT.get(k, k)}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (f"{task_name}: dropped {len(dropped)} of {total} examples unusable with this "
            f"tokenizer ({why}); {total - len(dropped)} remain.")


_KIND_TEXT = {
    "answer-tokens": "with an answer that is not a single token",
    "corrupted-length": "whose corrupted prompt has a different token length",
    "same-answer": "whose two answers are the same token",
    "too-long": "longer than the model's context",
    "no-corrupted": "without a corrupted prompt",
    "role": "with a role no token covers",
    "other": "for other reasons",
}


def _encode(model: Any, text: str, prepend_bos: bool | None = None) -> list[int]:
    return model.to_tokens(text, prepend_bos=prepend_bos)[0].tolist()


def _encode_untruncated(model: Any, text: str) -> list[int]:
    # TransformerLens truncates to n_ctx by default, which would report the context as the length.
    try:
        return model.to_tokens(text, truncate=False)[0].tolist()
    except TypeError:  # tokenizer-only stand-ins take no `truncate` and never truncate
        return _encode(model, text)


_LONGEST: dict[int, int] = {}


def _longest_token_chars(tokenizer: Any) -> int:
    """An upper bound on the characters one token covers (byte-level vocabularies: one per byte)."""
    key = id(tokenizer)
    if key not in _LONGEST:
        try:
            vocab = tokenizer.get_vocab()
            _LONGEST[key] = max(1, max((len(t) for t in vocab), default=1))
        except Exception:  # no vocabulary to read: no early bound, the token count decides
            _LONGEST[key] = 1 << 30
    return _LONGEST[key]


def _str(model: Any, ids: list[int]) -> list[str]:
    return [model.tokenizer.decode([i]) for i in ids]


def _answer_id(model: Any, ex: Example, which: str, prompt_ids: list[int]) -> int:
    """The single token that ``answer`` adds after the prompt, or a TaskError showing why not."""
    answer = getattr(ex, which)
    whole = _encode(model, ex.clean + answer)
    alone = _encode(model, answer, prepend_bos=False)
    n = len(prompt_ids)
    if whole[:n] == prompt_ids and len(whole) == n + 1:
        tid = whole[n]
        bos = getattr(model.tokenizer, "bos_token_id", None)
        if alone and alone[0] == bos and len(alone) > 1:
            raise InvalidExample("answer-tokens",
                f"The {which} answer {answer!r} tokenizes with a leading BOS token on this "
                f"model ({_str(model, alone)}); circuitwise would read the wrong logit. Check "
                "the tokenizer's add_bos_token setting."
            )
        return tid
    added = whole[n:] if whole[:n] == prompt_ids else whole
    raise InvalidExample("answer-tokens",
        f"The {which} answer {answer!r} of prompt {ex.clean!r} is not one token in context: "
        f"after the prompt it tokenizes as {_str(model, added)} ({len(added)} tokens). Use an "
        "answer that is a single token for this model (often with a leading space, e.g. "
        "' young')."
    )


def _role_positions(model: Any, ex: Example, ids: list[int]) -> dict[str, int] | None:
    """Token position of each role: the token whose character span covers the role's start.

    A word's token often starts with the space before it (GPT-2's " young" spans the space and
    the word); roles point at the word's first letter, which that token covers whether or not the
    tokenizer trims the space from its offsets.
    """
    if not ex.roles:
        return None
    try:
        enc = model.tokenizer(ex.clean, return_offsets_mapping=True, add_special_tokens=False)
        spans = enc["offset_mapping"]
        n_plain = len(enc["input_ids"])
    except (NotImplementedError, TypeError, ValueError, KeyError):
        # Slow (Python) tokenizers give no offsets; count the tokens of the text before the role.
        spans, n_plain = None, len(_encode(model, ex.clean, prepend_bos=False))
    shift = len(ids) - n_plain  # tokens the model prepends (BOS)
    out = {}
    for role, char in ex.roles.items():
        if spans is not None:
            hits = [j for j, (lo, hi) in enumerate(spans) if lo <= char < hi]
        else:
            before = ex.clean[:char].rstrip(" ")
            hits = [len(_encode(model, before, prepend_bos=False))] if 0 <= char < len(ex.clean) else []
        if not hits:
            raise InvalidExample(
                "role",
                f"Role {role!r} of {ex.clean!r} points at character {char}, which no token "
                "covers. Point roles at the first character of a word.",
            )
        out[role] = shift + hits[0]
    return out


def check_example(model: Any, ex: Example, need_corrupted: bool) -> tuple[list[int], list[int] | None, tuple[int, int]]:
    """Tokenize one example and raise :class:`TaskError` with the fix if it is unusable."""
    n_ctx = model.cfg.n_ctx
    # Before tokenizing: a 10 MB prompt would cost seconds and gigabytes only to be refused.
    # Twice the longest token: normalisers can merge two characters into one (e + ◌́ → é).
    at_least = -(-len(ex.clean) // (2 * _longest_token_chars(model.tokenizer)))
    if at_least >= n_ctx:
        raise InvalidExample("too-long",
            f"Prompt {ex.clean[:60]!r}… is {len(ex.clean):,} characters, so at least {at_least:,} tokens "
            f"for this tokenizer; the model's context is {n_ctx:,} tokens. Shorten the prompt."
        )
    ids = _encode_untruncated(model, ex.clean)
    if len(ids) >= n_ctx:
        raise InvalidExample("too-long",
            f"Prompt {ex.clean[:60]!r}… is {len(ids):,} tokens long; the model's context is {n_ctx:,} "
            "tokens and the answer needs one more. Shorten the prompt."
        )
    answers = (_answer_id(model, ex, "correct", ids), _answer_id(model, ex, "incorrect", ids))
    if answers[0] == answers[1]:
        raise InvalidExample("same-answer",
            f"The correct and incorrect answers of {ex.clean!r} are the same token "
            f"({_str(model, [answers[0]])}); the logit difference would be 0. Give two different answers."
        )
    cids = None
    if ex.corrupted is not None:
        cids = _encode(model, ex.corrupted)
        if len(cids) != len(ids):
            raise InvalidExample("corrupted-length",
                f"The corrupted prompt is {len(cids)} tokens but its clean prompt is {len(ids)}; "
                f"patching needs them position by position.\n  clean:     {_str(model, ids)}\n"
                f"  corrupted: {_str(model, cids)}\nChange the corrupted prompt so the two line up "
                "token by token (e.g. swap a word for one of the same token length)."
            )
    elif need_corrupted:
        raise InvalidExample("no-corrupted",
            f"Example {ex.clean!r} has no corrupted prompt, which this analysis needs. Add a "
            "'corrupted' field, or use a task built with a corruption scheme."
        )
    return ids, cids, answers


def tokenize_task(
    model: Any,
    task: Task,
    *,
    need_corrupted: bool = False,
    on_invalid: Literal["raise", "drop"] = "raise",
) -> tuple[TokenizedTask, list[Dropped]]:
    """Tokenize and validate ``task`` for ``model``.

    With ``on_invalid="raise"`` the first unusable example raises :class:`TaskError` saying how
    to fix it; with ``"drop"`` unusable examples are left out and returned, with their reasons,
    so the caller can report the count (never silently).
    """
    task.require_nonempty()
    kept: list[int] = []
    rows: list[tuple[list[int], list[int] | None, tuple[int, int], dict[str, int] | None]] = []
    dropped: list[Dropped] = []
    for i, ex in enumerate(task.examples):
        try:
            ids, cids, ans = check_example(model, ex, need_corrupted)
            positions = _role_positions(model, ex, ids)
        except TaskError as e:
            if on_invalid == "raise":
                if isinstance(e, InvalidExample):  # the other way out, by its name (task files are strict)
                    raise InvalidExample(e.kind, f"{e} Or drop the examples unusable with this tokenizer "
                                                 "(--drop-invalid; on_invalid='drop' in Python).") from None
                raise
            dropped.append(Dropped(i, str(e), getattr(e, "kind", "other")))
            continue
        kept.append(i)
        rows.append((ids, cids, ans, positions))
    if not rows:
        raise NoUsableExamples(
            f"None of the {len(task)} examples of task {task.name!r} is usable with this model's "
            f"tokenizer. First reason: {dropped[0].reason}"
        )
    pad = model.tokenizer.pad_token_id
    if pad is None:
        pad = model.tokenizer.eos_token_id if model.tokenizer.eos_token_id is not None else 0
    width = max(len(r[0]) for r in rows)
    clean = torch.full((len(rows), width), pad, dtype=torch.long)
    has_corr = all(r[1] is not None for r in rows)
    corrupted = torch.full((len(rows), width), pad, dtype=torch.long) if has_corr else None
    for j, (ids, cids, _, _) in enumerate(rows):
        clean[j, : len(ids)] = torch.tensor(ids)
        if corrupted is not None and cids is not None:
            corrupted[j, : len(cids)] = torch.tensor(cids)
    roles = tuple(r[3] or {} for r in rows) if any(r[3] for r in rows) else None
    tok = TokenizedTask(
        task=task.subset(kept) if dropped else task,
        clean=clean,
        corrupted=corrupted,
        answers=torch.tensor([r[2] for r in rows], dtype=torch.long),
        last=torch.tensor([len(r[0]) - 1 for r in rows], dtype=torch.long),
        str_tokens=tuple(tuple(_str(model, r[0])) for r in rows),
        corrupted_str_tokens=tuple(tuple(_str(model, r[1])) for r in rows if r[1] is not None)
        if has_corr
        else None,
        roles=roles,
        pad_id=int(pad),
    )
    return tok.to(model.cfg.device), dropped


__all__ = ["Dropped", "InvalidExample", "TokenizedTask", "check_example", "describe_dropped", "tokenize_task"]
