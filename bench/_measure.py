"""Timing and peak memory of one stage: wall, process CPU time, and CPU RSS or GPU allocation.

CPU memory: ``getrusage``'s ``ru_maxrss`` is the process's high-water mark since it started (it
cannot be reset), so each stage also runs a sampler thread reading the RSS with psutil every few
milliseconds: ``peak_rss_mb`` is the stage's own peak, ``rss_before_mb`` what was resident when it
began (the model, the caches), ``maxrss_mb`` the process high-water mark after it. Without
psutil only ``maxrss_mb`` is recorded. GPU memory: ``torch.cuda.max_memory_allocated`` with the
peak reset at the stage's start (``gpu_before_mb`` is what was allocated then), plus the
reserved peak; the clock reads after ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
import traceback
from typing import Any, Callable

import torch

try:
    import psutil
except ImportError:  # the numbers fall back to ru_maxrss alone
    psutil = None

MB = 1 << 20


def _maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / MB if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


class _RSSSampler:
    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process() if psutil is not None else None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "_RSSSampler":
        if self._proc is not None:
            self.peak = self._proc.memory_info().rss
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.peak = max(self.peak, self._proc.memory_info().rss)


def _is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def measure(label: str, fn: Callable[[], Any], device: str, record: dict[str, Any],
            echo: bool = True) -> Any:
    """Run ``fn`` as stage ``label``; its times and memory go to ``record[label]``.

    A failure is recorded (type, message, the traceback's last lines) and returns None, so that
    one stage's failure costs only that stage.
    """
    cuda = _is_cuda(device) and torch.cuda.is_available()
    # MPS runs asynchronously too: without a sync the clock stops when the work is queued.
    mps = str(device).startswith("mps") and torch.backends.mps.is_available()
    entry: dict[str, Any] = {}
    if mps:
        torch.mps.synchronize()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        entry["gpu_before_mb"] = torch.cuda.memory_allocated() / MB
    rss_before = psutil.Process().memory_info().rss / MB if psutil is not None else None
    w0, c0 = time.perf_counter(), time.process_time()
    out = None
    with _RSSSampler() as sampler:
        try:
            out = fn()
            if cuda:
                torch.cuda.synchronize()
            elif mps:
                torch.mps.synchronize()
        except Exception as e:  # noqa: BLE001 - a benchmark keeps going and records what broke
            entry["error"] = error_record(e)
    entry["wall_s"] = time.perf_counter() - w0
    entry["cpu_s"] = time.process_time() - c0
    if psutil is not None:
        entry["rss_before_mb"] = rss_before
        entry["peak_rss_mb"] = sampler.peak / MB
    entry["maxrss_mb"] = _maxrss_mb()
    if cuda:
        entry["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / MB
        entry["gpu_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / MB
    record[label] = entry
    if echo:
        mem = (f"gpu peak {entry['gpu_peak_mb']:8.1f} MB" if cuda else
               f"rss peak {entry['peak_rss_mb']:8.1f} MB" if "peak_rss_mb" in entry else
               f"maxrss {entry['maxrss_mb']:8.1f} MB")
        err = f"  FAILED: {entry['error']['type']}: {entry['error']['message'][:120]}" if "error" in entry else ""
        print(f"  {label:34s} {entry['wall_s']:8.2f} s wall {entry['cpu_s']:8.2f} s cpu  {mem}{err}", flush=True)
    return out


def error_record(e: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    return {"type": type(e).__name__, "message": str(e), "traceback_tail": "".join(tb)[-3000:]}


def release(model: Any) -> None:
    """Drop circuitwise's per-model caches of ``model`` so that ``del model`` frees it.

    Both caches are WeakKeyDictionaries keyed by the bridge, but their values (``Weights._model``,
    and the GraphModel holding those Weights) refer back to the bridge, so without this every
    model the fast engines touched stays alive, GPU memory included, until the process ends.
    """
    for mod in ("circuitwise.models.weights", "circuitwise.circuits.forward"):
        cache = getattr(sys.modules.get(mod), "_CACHE", None)
        if cache is not None:
            try:
                cache.pop(model, None)
            except TypeError:
                pass


def free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = ["MB", "error_record", "free_memory", "measure", "release"]
