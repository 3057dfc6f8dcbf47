"""Independent pieces of engine work on several CPU threads, each running torch single-threaded.

torch splits every operation over its intra-op threads and waits for the slowest at every
operation. When other programs keep the cores busy, a descheduled thread stalls its siblings at
each of the thousands of operations a forward makes (measured on 2 cores beside two PyTorch jobs:
`circuit` at GPT-2-small shapes took 9.4x its idle time with 2 intra-op threads, 3.8x with one).
Pieces of work that do not depend on each other — the stacks of patched runs of an evaluation —
need no such barrier: ``workers`` Python threads, each running its pieces with one intra-op thread
(torch releases the GIL inside operations), are threads the scheduler shares out like any other,
and none waits for another. The CLI sets :data:`WORKERS` from the cores (cli.threads).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

# Threads that run independent pieces (1: in the caller's thread, with torch's own thread count).
WORKERS = 1


def map_pieces(fn: Callable[[T], R], pieces: Sequence[T], device: torch.device | str | None = "cpu",
               on_done: Callable[[int, R], None] | None = None, *, keep: bool = True) -> list[R]:
    """``[fn(p) for p in pieces]``, on :data:`WORKERS` threads where the work runs on a CPU.

    ``device`` is where the work runs (None: work that must stay in the caller's thread, e.g. hooks
    on a shared model). ``on_done(i, result)`` is called in the caller's thread, in order. Gradient
    and inference modes are thread-local in torch, so each worker runs in the caller's.
    ``keep=False``: results go to ``on_done`` only and are dropped after it (the list is empty), so
    large per-piece results (score buffers) do not all live at once.
    """
    workers = min(WORKERS, len(pieces))
    if workers <= 1 or device is None or torch.device(device).type != "cpu":
        out = []
        for i, p in enumerate(pieces):
            r = fn(p)
            if on_done is not None:
                on_done(i, r)
            if keep:
                out.append(r)
        return out
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def run(p: T) -> R:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(p)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ex = ThreadPoolExecutor(workers, thread_name_prefix="circuitwise")
    try:
        # Each piece in a copy of the caller's context: context-scoped settings (models.relevance) hold there too.
        futures: list[Future[R] | None] = [ex.submit(contextvars.copy_context().run, run, p) for p in pieces]
        out = []
        for i, f in enumerate(futures):
            assert f is not None
            r = f.result()
            futures[i] = None  # a finished future holds its result: let it go once it is used
            if on_done is not None:
                on_done(i, r)
            if keep:
                out.append(r)
        return out
    finally:
        # On an error or Ctrl-C the pieces not started are dropped (the running ones finish).
        ex.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


__all__ = ["WORKERS", "map_pieces"]
