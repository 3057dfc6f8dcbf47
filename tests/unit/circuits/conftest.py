"""Fixtures for circuit tests: the seed task on the tiny/small models, and the known-circuit model."""

from __future__ import annotations

import pytest

import circuitwise as cw
from tests.unit.circuits.known_circuit import known_circuit_task, make_known_circuit_checkpoint


@pytest.fixture(scope="session")
def seed_task():
    return cw.get_task("opposites-seed")


@pytest.fixture(scope="session")
def tiny_tok(tiny_model, seed_task):
    return cw.tokenize_task(tiny_model, seed_task, need_corrupted=True)[0]


@pytest.fixture(scope="session")
def small_tok(small_model, seed_task):
    return cw.tokenize_task(small_model, seed_task, need_corrupted=True)[0]


@pytest.fixture(scope="session")
def known_ckpt(tmp_path_factory):
    return make_known_circuit_checkpoint(tmp_path_factory.mktemp("known"))


@pytest.fixture(scope="session")
def known_model(known_ckpt):
    return cw.load_model(str(known_ckpt), device="cpu")


@pytest.fixture(scope="session")
def known_tok(known_model):
    return cw.tokenize_task(known_model, known_circuit_task(), need_corrupted=True)[0]
