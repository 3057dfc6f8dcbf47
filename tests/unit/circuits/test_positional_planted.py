"""Ground truth for position-aware edges: the known-circuit model, where the letter moves at known positions.

On " X and then" the planted circuit carries the letter (known_circuit.py) as five (edge, position)
pairs: the input at the letter's token into L0H0's value (L0H0 reads the letter there from every
query position); L0H0's copies at every token from the letter on into L1H0's value (L1H0 averages
them all); L1H0 at the last token into the logits. Nothing else differs between the runs at those
edges' other positions (the fillers and BOS are the same in both prompts).
"""

from __future__ import annotations

import json
import random

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import Circuit, score_edges
from circuitwise.circuits.positional import OTHER
from circuitwise.circuits.select import select_positional
from circuitwise.config import circuit_method_options
from circuitwise.errors import ConfigError
from circuitwise.evaluation.evaluate import evaluate_circuit
from circuitwise.evaluation.faithfulness import completeness, faithfulness
from circuitwise.schema.circuit import CircuitFile
from tests.unit.circuits.known_circuit import FILLERS, LETTERS


def planted_pairs(letter: str, positions: list[str], end: str) -> set[tuple[str, str]]:
    return ({("input->L0H0.v", letter), ("L1H0->logits", end)}
            | {("L0H0->L1H0.v", p) for p in positions})


def recall_precision(found: set, planted: set) -> tuple[float, float]:
    hit = len(found & planted)
    return hit / len(planted), hit / max(1, len(found))


def grown_circuit(model, tok, scores, target: float = 0.9):
    """The fewest strongest (edge, position) pairs whose positional faithfulness reaches ``target``."""
    for n in range(1, 40):
        c = select_positional(scores, n=n, model=model, tok=tok)
        f = faithfulness(model, tok, c)
        if f.faithfulness >= target:
            return c, f
    raise AssertionError("no positional circuit of up to 40 pairs reaches the target")


def test_token_positions_recover_the_planted_pairs(known_model, known_tok, record_property):
    scores = score_edges(known_model, known_tok, "eap-ig", steps=5, positions="tokens")
    labels = scores.positions.labels  # BOS, the letter, two fillers (the first prompt's tokens)
    planted = planted_pairs(labels[1], list(labels[1:]), labels[3])
    c, f = grown_circuit(known_model, known_tok, scores)
    recall, precision = recall_precision(set(c.position_pairs()), planted)
    record_property("positional_recall_precision_faithfulness", (recall, precision, f.faithfulness))
    print(f"tokens: recall {recall:.2f}, precision {precision:.2f}, {c.pair_mask().sum()} pairs, "
          f"faithfulness {f.faithfulness:.3f}")
    assert (recall, precision) == (1.0, 1.0)
    assert f.faithfulness >= 0.9
    # The planted pairs' complement alone does next to nothing.
    assert abs(completeness(known_model, known_tok, c).complement.faithfulness) < 0.1


def roles_copy_task(n: int = 16, seed: int = 1) -> cw.Task:
    """The copy task with 2 or 3 fillers (prompts of two lengths), the letter and last word as roles."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        a, b = rng.sample(LETTERS, 2)
        fillers = [rng.choice(FILLERS) for _ in range(2 + i % 2)]
        text = "".join(fillers)
        clean = a + text
        examples.append(cw.Example(clean=clean, correct=a, incorrect=b, corrupted=b + text,
                                   roles={"LETTER": 1, "END": len(clean) - len(fillers[-1]) + 1}))
    return cw.Task("copy-letter-roles", tuple(examples))


@pytest.fixture(scope="module")
def known_roles_tok(known_model):
    tok = cw.tokenize_task(known_model, roles_copy_task(), need_corrupted=True)[0]
    assert not tok.same_length
    return tok


def test_role_positions_recover_the_planted_pairs_across_lengths(known_model, known_roles_tok, record_property):
    scores = score_edges(known_model, known_roles_tok, "eap-ig", steps=5, positions="roles")
    assert scores.positions.labels == ("LETTER", "END", OTHER)
    planted = planted_pairs("LETTER", ["LETTER", OTHER, "END"], "END")
    c, f = grown_circuit(known_model, known_roles_tok, scores)
    recall, precision = recall_precision(set(c.position_pairs()), planted)
    record_property("positional_recall_precision_faithfulness", (recall, precision, f.faithfulness))
    print(f"roles: recall {recall:.2f}, precision {precision:.2f}, faithfulness {f.faithfulness:.3f}")
    assert (recall, precision) == (1.0, 1.0)
    # The planted edges at their other positions carry nothing: the runs do not differ there.
    g = scores.graph
    assert scores.by_position[g.edge_id("input", "L0H0.v"), 1:].abs().max() == 0
    assert scores.by_position[g.edge_id("L1H0", "logits"), [0, 2]].abs().max() == 0


def test_circuit_json_records_positions_and_reloads(known_model, known_roles_tok, tmp_path):
    scores = score_edges(known_model, known_roles_tok, "eap-ig", steps=3, positions="roles")
    c = select_positional(scores, n=5, model=known_model, tok=known_roles_tok)
    data = c.to_json()
    CircuitFile.model_validate(data)
    assert data["positions"] == {"mode": "roles", "labels": ["LETTER", "END", OTHER]}
    by_edge = {f"{e['sender']}->{e['receiver']}": e for e in data["edges"]}
    assert by_edge["L0H0->L1H0.v"]["kept_positions"] == ["LETTER", "END", OTHER]
    assert by_edge["input->L0H0.v"]["kept_positions"] == ["LETTER"]
    assert set(by_edge["input->L0H0.v"]["position_scores"]) == {"LETTER", "END", OTHER}
    back = Circuit.load(c.save(tmp_path / "circuit.json"), known_model)
    assert torch.equal(back.pair_mask(), c.pair_mask()) and back.positional
    # circuit.json lists the circuit's edges only: their scores come back, the others' are unknown (NaN).
    torch.testing.assert_close(back.position_scores[c.edges], c.position_scores[c.edges])
    assert back.position_scores[~c.edges].isnan().all()
    assert faithfulness(known_model, known_roles_tok, back).faithfulness == pytest.approx(
        faithfulness(known_model, known_roles_tok, c).faithfulness)
    # The whole-edge evaluation (random circuits, curve, MIB) would measure other edge sets: refused.
    with pytest.raises(ConfigError, match="kept_positions"):
        evaluate_circuit(known_model, known_roles_tok, back, random_samples=2)
    # A position-agnostic file (no positions) still loads as before.
    plain = {k: v for k, v in json.loads((tmp_path / "circuit.json").read_text()).items() if k != "positions"}
    assert Circuit.from_json(plain, known_model).positions is None


def test_the_option_reaches_the_method_as_the_cli_gives_it():
    opts = circuit_method_options("eap-ig", {"positions": "roles"}, 5)
    assert (opts.positions, opts.steps) == ("roles", 5)
    with pytest.raises(ConfigError, match="positions must be one of none, tokens, roles"):
        circuit_method_options("eap", {"positions": "spans"}, None)

