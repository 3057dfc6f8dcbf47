"""Independent pieces on worker threads (models.parallel): the same numbers as one thread."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import circuitwise.models.parallel as parallel


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setattr(parallel, "WORKERS", 2)


def test_map_pieces_keeps_order_modes_and_torch_threads(two_workers):
    seen: list[tuple[str, bool, bool, int]] = []
    done: list[int] = []

    def fn(i: int) -> int:
        seen.append((threading.current_thread().name, torch.is_grad_enabled(),
                     torch.is_inference_mode_enabled(), torch.get_num_threads()))
        return i * i

    before = torch.get_num_threads()
    with torch.no_grad():
        out = parallel.map_pieces(fn, list(range(7)), "cpu", on_done=lambda i, r: done.append(i))
    assert out == [i * i for i in range(7)]
    assert done == list(range(7))  # in order, in the caller's thread
    assert all(name.startswith("circuitwise") for name, *_ in seen)
    assert not any(grad for _, grad, _, _ in seen)  # the caller's no_grad reached the workers
    assert {n for *_, n in seen} == {1}  # each worker runs torch single-threaded
    assert torch.get_num_threads() == before  # and the caller's thread count is back


def test_map_pieces_raises_a_workers_error(two_workers):
    def fn(i: int) -> int:
        if i == 3:
            raise ValueError("piece 3")
        return i

    with pytest.raises(ValueError, match="piece 3"):
        parallel.map_pieces(fn, list(range(5)))


def test_an_interrupt_drops_the_pieces_not_started(two_workers):
    ran: list[int] = []

    def fn(i: int) -> int:
        ran.append(i)
        time.sleep(0.005)
        return i

    def stop(i: int, _: int) -> None:
        if i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        parallel.map_pieces(fn, list(range(200)), on_done=stop)
    assert len(ran) < 200
