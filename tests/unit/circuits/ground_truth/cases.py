"""The ground-truth constructions, each a hand-set checkpoint with its planted edges and task.

Every case says, besides the planted edges (our graph's names, ``circuits/graph.py``), which
TransformerLens hooks carry the corruption to the answer (patching one of them from the corrupted
run gives the corrupted answer) and which do not (patching it changes nothing), so the test of the
construction itself needs nothing of circuitwise but the loader.

A hook is ``(name, head)``: ``head`` indexes the hook's head axis (query heads for ``hook_q`` and
``hook_z``, key/value heads for ``hook_k``/``hook_v``), ``None`` for an MLP's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tests.unit.circuits import known_circuit, known_circuit_llama
from tests.unit.circuits.ground_truth import k_composition, llama_swiglu, mlp_hop, q_composition, single_head

Hook = tuple[str, "int | None"]


def z(layer: int, head: int) -> Hook:
    return (f"blocks.{layer}.attn.hook_z", head)


def qkv(kind: str, layer: int, head: int) -> Hook:
    return (f"blocks.{layer}.attn.hook_{kind}", head)


def mlp(layer: int) -> Hook:
    return (f"blocks.{layer}.hook_mlp_out", None)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]
    task: Callable[[], Any]
    planted: frozenset[tuple[str, str]]
    carriers: tuple[Hook, ...]  # patched from the corrupted run: the corrupted answer
    inert: tuple[Hook, ...]  # patched from the corrupted run: the clean answer (besides unplanted nodes)
    planted_nodes: tuple[Hook, ...]  # zeroed: no answer left; every other head and MLP zeroed: no change

    def __str__(self) -> str:
        return self.name


CASES: tuple[Case, ...] = (
    Case("single-head", single_head.build, single_head.task, single_head.PLANTED,
         carriers=(z(1, 1), qkv("v", 1, 1)), inert=(qkv("q", 1, 1), qkv("k", 1, 1)),
         planted_nodes=(z(1, 1),)),
    Case("v-composition", known_circuit.make_known_circuit_checkpoint, known_circuit.known_circuit_task,
         frozenset(known_circuit.PLANTED),
         carriers=(z(0, 0), z(1, 0), qkv("v", 1, 0)), inert=(qkv("q", 1, 0), qkv("k", 1, 0)),
         planted_nodes=(z(0, 0), z(1, 0))),
    Case("mlp-two-hop", mlp_hop.build, mlp_hop.task, mlp_hop.PLANTED,
         carriers=(z(0, 0), mlp(1)), inert=(), planted_nodes=(z(0, 0), mlp(1))),
    Case("k-composition", k_composition.build, k_composition.task, k_composition.PLANTED,
         carriers=(z(0, 1), qkv("k", 1, 0), z(1, 0)), inert=(qkv("q", 1, 0), qkv("v", 1, 0)),
         planted_nodes=(z(0, 1), z(1, 0))),
    Case("q-composition", q_composition.build, q_composition.task, q_composition.PLANTED,
         carriers=(z(0, 2), qkv("q", 1, 1), z(1, 1)), inert=(qkv("k", 1, 1), qkv("v", 1, 1)),
         planted_nodes=(z(0, 2), z(1, 1))),
    # Llama: RMSNorm, rotary, grouped-query attention (L1H2 reads key/value head 1), SwiGLU.
    Case("llama-gqa", known_circuit_llama.make_known_llama_checkpoint, known_circuit_llama.known_circuit_task,
         frozenset(known_circuit_llama.PLANTED),
         carriers=(z(0, 0), z(1, 2), qkv("v", 1, 1)), inert=(qkv("q", 1, 2), qkv("k", 1, 1)),
         planted_nodes=(z(0, 0), z(1, 2))),
    # Llama again, the path through a SwiGLU MLP (L0H0 shares its key/value head with L0H1).
    Case("llama-swiglu", llama_swiglu.build, llama_swiglu.task, llama_swiglu.PLANTED,
         carriers=(z(0, 0), qkv("v", 0, 0), mlp(1)), inert=(qkv("q", 0, 0),), planted_nodes=(z(0, 0), mlp(1))),
)

BY_NAME = {c.name: c for c in CASES}

__all__ = ["BY_NAME", "CASES", "Case", "Hook"]
