"""Mechanism read-outs on models whose mechanism is known by construction (tests/unit/circuits).

Each construction's docstring says which head attends where and what it writes; the read-out must
name the position (or role) the head reads, its query's preference, and the token it writes.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import circuitwise as cw
from circuitwise.attribution import direct_logit_attribution
from circuitwise.attribution.mechanism import COPY_Z, _normed, mechanism_readouts
from circuitwise.attribution.readout import readout
from circuitwise.metrics import gather_last
from tests.unit.circuits.ground_truth.cases import BY_NAME
from tests.unit.circuits.ground_truth.gpt2 import LETTERS

_booted: dict[tuple[str, str], tuple] = {}
_built: dict[str, object] = {}


@pytest.fixture(scope="session")
def case(tmp_path_factory):
    """``case(name, dtype)``: ``(model, tok)`` of a ground-truth construction, booted once per session."""

    def get(name: str, dtype: str = "float32"):
        if (name, dtype) not in _booted:
            c = BY_NAME[name]
            if name not in _built:
                _built[name] = c.build(tmp_path_factory.mktemp(name))
            model = cw.load_model(str(_built[name]), device="cpu", dtype=dtype)
            _booted[(name, dtype)] = (model, cw.tokenize_task(model, c.task(), need_corrupted=True)[0])
        return _booted[(name, dtype)]

    return get


@pytest.fixture(scope="session")
def known(case):
    """The known-circuit GPT-2 (tests/unit/circuits/known_circuit.py), as the circuits tests boot it."""
    return case("v-composition")


def _copies(w) -> None:
    assert w.copies and not w.suppresses
    assert w.z >= COPY_Z and w.rank == 0 and w.top_fraction == 1.0 and w.cosine > 0.9
    assert w.top[0].token in LETTERS


def test_known_circuit_first_head_reads_the_letter_and_writes_nothing_the_logits_read(known):
    known_model, known_tok = known
    m = mechanism_readouts(known_model, known_tok, [(0, 0), (1, 0)])
    h = m["L0H0"]
    # L0H0: a constant query and position 1's key — every prompt, all attention on the letter.
    assert (h.reads_position, h.qk_position, h.attended, h.attended_fraction) == ("1", "1", "1", 1.0)
    p1 = next(p for p in h.positions if p.key == "1")
    assert p1.attention > 0.99 and p1.n == len(known_tok) and p1.token in LETTERS
    assert {t.token for t in h.top_sources[:3]} <= set(LETTERS)
    # It writes the letter into a space the unembedding does not read: through the final
    # LayerNorm's centring that lowers every letter alike, which is neither copying nor suppression.
    for w in (h.ov_attended, h.output):
        assert not w.copies and not w.suppresses
        assert w.cosine is None or abs(w.cosine) < 0.05


def test_known_circuit_second_head_copies_the_copy_to_the_answer(known):
    known_model, known_tok = known
    h = mechanism_readouts(known_model, known_tok, [(1, 0)])["L1H0"]
    # Uniform attention (zero query and key): every position the same; ties go to position 0.
    assert all(abs(p.attention - 0.25) < 1e-6 for p in h.positions)
    assert h.attended == "0" and not h.ov_attended.copies  # BOS carries no letter to copy
    # The answer letter's position holds L0H0's copy of it: reading it, L1H0 writes that letter.
    assert h.ov_answer.input == "residual"
    _copies(h.ov_answer)
    _copies(h.output)  # its real output at the answer position raises the correct answer


def test_single_head_reads_the_letter_and_copies_it(case):
    model, tok = case("single-head")
    h = mechanism_readouts(model, tok, [(1, 1)])["L1H1"]
    assert (h.reads_position, h.qk_position, h.attended_fraction) == ("1", "1", 1.0)
    assert h.positions[1].token_count == max(p.token_count for p in h.positions if p.key == "1")
    _copies(h.ov_attended)
    _copies(h.output)
    # The token it attends to is the answer, so both OV read-outs read the same value vectors.
    assert h.ov_attended.z == pytest.approx(h.ov_answer.z)


def test_induction_pair_reads_the_previous_token_and_the_letter_after_the_first_occurrence(case):
    model, tok = case("k-composition")  # " Q X R Y Q": BOS 0, Q 1, X 2, R 3, Y 4, Q 5
    m = mechanism_readouts(model, tok, [(0, 1), (1, 0)])
    prev, ind = m["L0H1"], m["L1H0"]
    assert (prev.reads_position, prev.qk_position) == ("4", "4")  # the token before the last
    assert (ind.reads_position, ind.qk_position, ind.attended_fraction) == ("2", "2", 1.0)  # X
    _copies(ind.ov_attended)
    _copies(ind.output)
    assert not prev.ov_attended.copies and not prev.ov_attended.suppresses


def test_roles_name_what_the_query_composed_head_reads(case):
    model, tok = case("q-composition")  # " second C F A and": the selector names the answer's letter
    examples = []
    for ex in tok.task.examples:
        # Roles point at a word's first character (not the space before it).
        start = ex.clean.index(" ", 1) + 1
        letters = [ex.clean.index(t, start) for t in ex.clean.split()[1:4]]
        answer = ex.clean.index(ex.correct.strip(), start)
        others = [c for c in letters if c != answer]
        examples.append(dataclasses.replace(ex, roles={"selector": 1, "answer": answer, "other_1": others[0],
                                                       "other_2": others[1]}))
    task = cw.Task("select-letter-roles", tuple(examples), "q-composition with roles")
    rtok = cw.tokenize_task(model, task, need_corrupted=True)[0]
    m = mechanism_readouts(model, rtok, [(0, 2), (1, 1)])
    mover, reader = m["L0H2"], m["L1H1"]
    assert (mover.reads_role, mover.qk_role, mover.reads_position) == ("selector", "selector", "1")
    assert (reader.reads_role, reader.qk_role) == ("answer", "answer")
    role = {r.key: r for r in reader.roles}
    assert role["answer"].attention > 0.5 > role["other_1"].attention + role["other_2"].attention
    assert sum(r.attention for r in reader.roles) == pytest.approx(1.0, abs=1e-5)  # roles and the rest
    _copies(reader.ov_attended)
    _copies(reader.output)


def test_grouped_query_head_reads_its_own_key_value_head(case):
    model, tok = case("llama-gqa")  # L1H2 reads key/value head 1
    m = mechanism_readouts(model, tok, [(0, 0), (1, 2)])
    assert m["L0H0"].reads_position == "1" and m["L0H0"].qk_position == "1"
    assert m["L0H0"].output.z is None and m["L0H0"].output.n == 0  # RMSNorm: a write into unread space is silent
    _copies(m["L1H2"].ov_answer)
    _copies(m["L1H2"].output)


def test_prompts_of_different_lengths_count_positions_from_the_end(case):
    model, tok = case("single-head")
    task = tok.task
    examples = [dataclasses.replace(ex, clean=ex.clean + " and" * (i % 2), corrupted=None)
                for i, ex in enumerate(task.examples)]
    ragged = cw.tokenize_task(model, cw.Task("ragged", tuple(examples), ""))[0]
    h = mechanism_readouts(model, ragged, [(1, 1)])["L1H1"]
    assert h.positions_from == "end"
    keys = {p.key: p for p in h.positions}
    assert keys["-4"].n == len(ragged) and keys["-5"].n == len(ragged) // 2  # one 5-token prompt in two
    # The letter (position 1 from the start) is -3 from the end in 4-token prompts, -4 in 5-token ones.
    assert keys["-3"].attention == pytest.approx(0.5, abs=0.01)
    assert keys["-4"].attention == pytest.approx(0.5, abs=0.01)
    assert keys["-4"].token_count == len(ragged) // 2  # BOS on the others
    assert h.qk_position in {"-4", "-3", "-2", "-1"}  # among the positions every prompt has
    _copies(h.ov_attended)


@pytest.mark.parametrize("name", ["single-head", "llama-gqa"])
def test_bfloat16_reads_out_what_float32_does(case, name):
    """Within a stated bound: attention to 0.02, the copying score's z to 2% (the model's bf16 logits
    differ from float32's by about that), the same positions, roles and flags."""
    heads = [(1, 1)] if name == "single-head" else [(0, 0), (1, 2)]
    full = mechanism_readouts(*case(name), heads)
    half = mechanism_readouts(*case(name, "bfloat16"), heads)
    for a, b in zip(full.heads, half.heads, strict=True):
        assert (a.reads_position, a.qk_position, a.attended) == (b.reads_position, b.qk_position, b.attended)
        for p, q in zip(a.positions, b.positions, strict=True):
            assert abs(p.attention - q.attention) < 0.02
        for wa, wb in ((a.ov_attended, b.ov_attended), (a.ov_answer, b.ov_answer), (a.output, b.output)):
            assert (wa.copies, wa.suppresses) == (wb.copies, wb.suppresses)
            assert (wa.z is None) == (wb.z is None)
            if wa.z is not None and abs(wa.z) > COPY_Z:
                assert wb.z == pytest.approx(wa.z, rel=0.02)


def test_read_outs_are_capped_and_serialise(known):
    known_model, known_tok = known
    m = mechanism_readouts(known_model, known_tok, [(1, 0), (1, 0)], max_prompts=5)
    assert (m.n_prompts, m.of, m.capped, len(m.heads)) == (5, len(known_tok), True, 1)
    data = m.to_json()
    assert data["heads"][0]["label"] == "L1H0" and data["capped"]
    from circuitwise.schema.results import MechanismSection

    MechanismSection.model_validate({**data, "heads": [{**h, "picked_by": ["dla+"]} for h in data["heads"]]})


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
def test_a_heads_output_read_out_is_its_direct_logit_attribution(family, family_model_for):
    """The output write, read on the answer columns, is DLA's per-head value (itself tested against TL):
    the same final norm (and post-attention norm) with the same frozen scales."""
    model = family_model_for(family)
    tok = cw.tokenize_task(model, cw.get_task("opposites-seed"))[0]
    dla = direct_logit_attribution(model, tok)
    ro = readout(model)
    l, h = model.cfg.n_layers - 1, 1
    names = {f"blocks.{l}.attn.hook_z"} | {n.scale_hook for n in (ro.final, ro.post_attn[l]) if n is not None}
    _, cache = model.run_with_cache(tok.clean, names_filter=lambda n: n in names, return_type=None)
    last = lambda n: gather_last(cache[n], tok.last).float()  # noqa: E731
    scale = lambda nm: None if nm is None else last(nm.scale_hook).reshape(-1)  # noqa: E731
    out = _normed(ro, l, last(f"blocks.{l}.attn.hook_z")[:, h] @ model.W_O[l, h].float(), scale(ro.final),
                  scale(ro.post_attn[l]))
    W_U = model.W_U.float()
    got = (out * (W_U[:, tok.answers[:, 0]] - W_U[:, tok.answers[:, 1]]).T).sum(-1)
    torch.testing.assert_close(got, dla.heads.per_example[:, l, h], atol=1e-4, rtol=1e-4)


def test_every_family_reads_the_attention_circuitsvis_shows(family_model):
    """On each family's tiny random checkpoint: the mean attention by position is the mean, over prompts,
    of each prompt's last row of the pattern ``attention_patterns`` returns (and a row sums to 1)."""
    from circuitwise.attribution import attention_patterns

    model = family_model
    tok = cw.tokenize_task(model, cw.get_task("opposites-seed"))[0]
    head = (model.cfg.n_layers - 1, model.cfg.n_heads - 1)
    h = mechanism_readouts(model, tok, [head]).heads[0]
    rows = [attention_patterns(model, tok, [head], example=i).values[0, -1] for i in range(len(tok))]
    by_key: dict[str, list[float]] = {}
    for row in rows:
        for p, a in enumerate(row.tolist()):
            key = str(p) if tok.same_length else str(p - len(row))
            by_key.setdefault(key, []).append(a)
    assert {p.key: p.n for p in h.positions} == {k: len(v) for k, v in by_key.items()}
    for p in h.positions:
        assert p.attention == pytest.approx(sum(by_key[p.key]) / len(by_key[p.key]), abs=1e-5)
    assert all(float(r.sum()) == pytest.approx(1.0, abs=1e-4) for r in rows)
    assert h.output.z is None or math.isfinite(h.output.z)
