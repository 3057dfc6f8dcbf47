"""MODEL_CARD.md for the bundled model, written by ``scripts/train_bundled.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_card(path: Path, stats: dict, curve: list[dict], results: dict, abl: dict,
               comps: dict, attn: dict, pairs: Sequence, templates: Sequence[str]) -> None:
    from bundled_corpus import FLIP_SHARE, MIX
    from bundled_eval import ROLES

    a = stats["args"]
    curve_cols = ["step", "minutes", "loss"]
    for s in ["train", *(k for k in results if k not in ("all", "flipped-train"))]:
        curve_cols += [f"{s}_acc", f"{s}_ld"]
    score_rows = [(s, r.n, r.accuracy, r.mean_logit_diff, r.min_logit_diff) for s, r in results.items()]
    abl_rows = [
        (s, ", ".join(f"L{l}H{h}" for l, h in x.heads), ", ".join(f"{d:.2f}" for d in x.head_dla),
         x.clean, x.ablated_all_pos, f"{x.drop_all_pos:.0%}", x.ablated_last_pos, f"{x.drop_last_pos:.0%}")
        for s, x in abl.items()
    ]
    comp_names = list(next(iter(comps.values())))
    attn_cols = [f"{r} ({s})" for s in attn for r in ROLES]
    heads_ = list(next(iter(attn.values())))
    attn_rows = [(f"L{l}H{h}", *(attn[s][(l, h)][r] for s in attn for r in ROLES)) for l, h in heads_]

    def reader(role: str) -> str:
        l, h = max(heads_, key=lambda k: attn["all"][k][role])
        return f"L{l}H{h} ({attn['all'][(l, h)][role]:.0%} of its attention on {role}, {attn['heldout-template'][(l, h)][role]:.0%} on held-out templates)"

    zero_note = ("- The last layer's zero MLP is part of the weights; analyses show it as a component "
                 "that contributes exactly nothing.") if a["mlp_free_last"] else ""
    shift = results["heldout-template"].mean_logit_diff + results["flipped-heldout-template"].mean_logit_diff
    comp_rows = [(s, *(c[n] for n in comp_names)) for s, c in comps.items()]
    mix = ", ".join(f"{k} {v:.0%}" for k, v in MIX.items())
    mlp = (f"; layer {a['layers'] - 1}'s MLP is zeroed and frozen (an attention-only last layer), so "
           "what reaches the logits after layer 0 is written by attention heads") if a["mlp_free_last"] else ""
    text = f"""# circuitwise bundled model

A small GPT-2-architecture model trained by circuitwise on a synthetic corpus, so that
`circuitwise run opposites --model bundled` does real work offline. It is a teaching and testing
model, not a language model: it knows only the corpus below.

Written by `scripts/train_bundled.py` (with `scripts/bundled_corpus.py`, `bundled_eval.py`,
`bundled_card.py`); retrain with

```
.venv/bin/python scripts/train_bundled.py --seed {a['seed']} --steps {a['steps']} --threads {a['threads']}
```

It took {stats['train_minutes']:.1f} minutes to train and {stats['total_minutes']:.1f} minutes in all (one
thread of a shared 2-core machine; torch {stats['torch']}, Python {stats['python']}). With the same
torch build and thread count the weights come out bit for bit the same.

## Model

| | |
|---|---|
| architecture | `GPT2LMHeadModel`, {a['layers']} layers, {a['heads']} heads, d_model {a['d_model']}, d_head {a['d_model'] // a['heads']}, MLP {4 * a['d_model']}, context {a['n_positions']} tokens, tied embeddings, no dropout{mlp} |
| parameters | {stats['n_params']:,} (float32) |
| files | `model.safetensors`, `config.json`, `tokenizer.json`, `tokenizer_config.json`, this card ({stats['size_bytes'] / 2**20:.2f} MiB in all; no pickles) |
| tokenizer | byte-level BPE in GPT-2's conventions (leading-space tokens, `<|endoftext|>` as BOS, EOS and unknown), {stats['vocab_size']} tokens, trained on the corpus; every word of the opposites task (all pairs and templates), of the filler and of the IOI and counting sentences is one token after a space, and capitalised words are one token without it |

## Data

Each training document is `<|endoftext|>` followed by 1–3 sentences, each of a random kind
({mix}). Documents are generated afresh at every step from seed {a['seed']} ({a['steps']} steps ×
{a['batch_size']} documents); nothing is read from disk.

- **opposite**: the built-in `opposites` task's prompts of its **training split only**
  ({stats['n_train_examples']} distinct prompts: {stats['n_train_pairs']} pairs × {stats['n_train_templates']} templates, both directions, all noun
  pairings) with the answer and a full stop. {FLIP_SHARE:.0%} of them are the task's own `flip`
  corruption with its answer ("A grandfather is young, but a kitten is old."), so that on these
  templates the first adjective, not the nouns, decides the answer.
- **fact**: a noun and an adjective it typifies, from the task's word lists of *every* pair
  ("The library is quiet."). The two adjectives of a pair never share a sentence, and held-out
  pairs and held-out templates never appear as opposites sentences. The fact frames are single
  clauses that reuse the templates' wording, the held-out templates' included ("The drum looks
  loud.", "Mary said that the drum was loud."); the two-clause "…, but …" sentence of a held-out
  template never occurs.
- **copy**: "The fox is red, and the cat is also red." (non-task adjectives), so the connective
  matters.
- **filler**: sentences with no opposites in them, which also use the template words one at a
  time (so a held-out template is a new sentence, not new words).
- **ioi**: "When Mary and John went to the store, John gave a drink to Mary."
- **counting**: "Count: three, four, five."

Loss: next-token cross-entropy on every token; the opposites answer token weighted
×{a['answer_weight']}, the fact, copy and IOI answers ×2. AdamW (lr {a['lr']}, weight decay
{a['weight_decay']} on matrices, betas 0.9/0.98), 5% warm-up then cosine decay to 10%, gradient
clipping at 1, batch {a['batch_size']}.

The task library has {len(pairs)} pairs and {len(templates)} templates; the held-out splits are the
task's own (`heldout-pair`: every fifth pair on the training templates; `heldout-template`: the
training pairs on the last two templates; `heldout-both`).

## Training curve

Scores during training (plain Hugging Face forward, {stats['n_heldout']} prompts per split; acc =
share of prompts whose correct answer's logit beats the incorrect one's; ld = mean logit
difference). `train` is 200 training prompts; `flipped-heldout-template` is the held-out-template
prompts with the first adjective flipped and the answers swapped, i.e. right only where the
adjective in the prompt, not the nouns, decides.

{_table(curve_cols, [[r.get(c) for c in curve_cols] for r in curve])}

## Held-out scores

Measured after saving, on the folder loaded with `cw.load_model` (TransformerLens bridge,
compatibility mode), with circuitwise's own `baseline`: the numbers the report shows.
`all` is `opposites` with its defaults (every pair and template, mostly training prompts).
`flipped-*` are the flip corruption with the answers swapped ("A grandfather is young, but a
kitten is" → " old"): right only where the adjective in the prompt, not the nouns, decides.

{_table(["split", "prompts", "accuracy", "mean logit diff", "min logit diff"], score_rows)}

## How it answers

Direct logit attribution by component (mean over prompts, in logits):

{_table(["split", *comp_names], comp_rows)}

Mean attention of each head from the final token to the prompt's roles (first noun, first
adjective, "but", second noun):

{_table(["head", *attn_cols], attn_rows)}

The heads that read each role most are {reader("ADJ")} for the adjective, {reader("N2")}
for the second noun and {reader("BUT")} for "but". Layer 0's heads bring these to the final
position, and the MLP there turns them into the answer (the component table above). On the training templates the
adjective decides (`flipped-train`: {results["flipped-train"].accuracy:.0%} of flipped prompts answered by it). On
held-out templates flipping the adjective moves the logit difference by {shift:.1f} on average but
decides only {results["flipped-heldout-template"].accuracy:.0%} of the flipped prompts: there the second noun weighs as much. On
held-out pairs, whose two adjectives it never saw together, it can only answer from what it
learned about the second noun and from which adjective the prompt already used.

## The circuit

The three heads with the largest direct logit attribution (`direct_logit_attribution`) are
mean-ablated at `blocks.{{l}}.attn.hook_z`: at every position with the head's mean output over all
real tokens of all prompts ("all positions"), or at the final token only with its mean over the
prompts' final tokens ("last position"). Drop = 1 − ablated / clean mean logit difference.

{_table(["split", "top-3 heads", "their DLA", "clean ld", "ablated ld (all positions)", "drop",
         "ablated ld (last position)", "drop"], abl_rows)}

`tests/integration/test_bundled_circuit.py` re-measures this with plain TransformerLens hooks.

## Limits

- The model has seen only its synthetic corpus: prompts outside the opposites, IOI and
  counting formats, or words outside its vocabulary (they split into many byte-level tokens),
  give meaningless answers. Findings on it show how circuitwise works, not how GPT-2 works.
- Its held-out scores rest partly on the nouns (see above): a held-out pair is answered from
  noun facts, not from knowing the two adjectives are opposites, and on held-out templates the
  adjective decides only about half of the flipped prompts.
{zero_note}
"""
    path.write_text(text, encoding="utf-8")


__all__ = ["write_card"]
