"""Edge attribution from gradients: ``(clean_s − corrupted_s) · ∂metric/∂input_r``, all edges at once.

For each batch: one forward records every sender's clean output, one records the corrupted
outputs, and forwards with gradients give ∂metric/∂input_r for every receiver ``r`` (its own
input tensor, so a head's q, k and v get separate gradients). Backward hooks on the receiver
inputs contract each layer's gradients with the sender differences as they arrive, so the
per-receiver gradients never all live in memory together. Scores are summed over positions and
averaged over examples (and over integration points).

The gradients are taken at inputs ``x(α) = e_corr + α · (e_clean − e_corr)``, where ``e`` is the
input embedding (token + position): α = 0 alone is EAP, exactly TransformerLens's
``attribution_patch(granularity="edge")`` summed over positions; several α is EAP-IG with
integrated gradients on the input embedding (Hanna et al., 2024).
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from circuitwise.circuits.forward import run_graph
from circuitwise.circuits.scores import EdgeScores, Prepared, Progress, no_progress, sender_outputs


def gradient_edge_scores(
    prep: Prepared,
    alphas: Sequence[float],
    *,
    batch_size: int,
    method: str,
    config: dict,
    progress: Progress = no_progress,
) -> EdgeScores:
    t0 = time.perf_counter()
    gm, tok, metric = prep.gm, prep.tok, prep.metric
    g = gm.graph
    S, R = len(g.senders), len(g.receivers)
    scores = torch.zeros(S, R, dtype=torch.float64 if gm.dtype == torch.float64 else torch.float32,
                         device=gm.device)
    eap_only = list(alphas) == [0.0]
    n = len(tok)
    sizes = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    total = sum(1 + -(-len(alphas) // max(1, batch_size // nb)) for nb in sizes)
    done = 0
    clean_sum = corr_sum = 0.0
    for b in tok.batches(batch_size):
        assert b.corrupted is not None
        Nb = len(b)
        out_c, al_c = sender_outputs(gm, b.clean, b.last, b.answers)
        clean_sum += float(metric(al_c).sum())
        state: dict[str, torch.Tensor] = {}
        if not eap_only:
            out_k, al_k = sender_outputs(gm, b.corrupted, b.last, b.answers)
            corr_sum += float(metric(al_k).sum())
            state["delta"] = out_c - out_k
            del out_k
        done += 1
        progress(done, total, method)
        e_c, e_k = gm.embed(b.clean), gm.embed(b.corrupted)
        # Integration points per forward: keep about batch_size rows per forward.
        per_fwd = max(1, batch_size // Nb)
        rows = torch.arange(Nb, device=gm.device)
        for start in range(0, len(alphas), per_fwd):
            chunk = list(alphas[start : start + per_fwd])
            c = len(chunk)

            def on_grad(rs: slice | int, grad: torch.Tensor, c: int = c) -> None:
                # grad: [R, c·Nb, …]; integration points are summed before contracting.
                gsum = grad if c == 1 else grad.reshape(grad.shape[0], c, Nb, *grad.shape[2:]).sum(1)
                delta = state["delta"]  # [S, Nb, P, d]
                if rs == g.logits_receiver:  # gsum [1, Nb, d] at each example's last position
                    d_last = delta[:, rows, b.last]  # [S, Nb, d]
                    scores[:, rs] += torch.einsum("snd,nd->s", d_last, gsum[0])
                    return
                n_send = g.senders_before(rs.start if isinstance(rs, slice) else rs)
                part = delta[:n_send].reshape(n_send, -1) @ gsum.reshape(gsum.shape[0], -1).T
                scores[:n_send, rs] += part if isinstance(rs, slice) else part[:, 0]

            alpha = torch.tensor(chunk, dtype=gm.dtype, device=gm.device).view(c, 1, 1, 1)
            x0 = (e_k.unsqueeze(0) + alpha * (e_c - e_k).unsqueeze(0)).reshape(c * Nb, *e_c.shape[1:])
            x0 = x0.detach().requires_grad_(True)
            with torch.enable_grad():
                run = run_graph(gm, x0, b.last.repeat(c), b.answers.repeat(c, 1), record=eap_only,
                                receiver_grad=on_grad)
                if eap_only:
                    assert run.outputs is not None
                    corr_sum += float(metric(run.answer_logits[0].detach()).sum())
                    state["delta"] = out_c - run.outputs
                torch.autograd.grad(metric(run.answer_logits[0]).sum(), x0)
            done += 1
            progress(done, total, method)
        del state, out_c
    scores /= n * len(alphas)
    return EdgeScores(
        graph=g,
        scores=g.from_dense(scores).float().cpu(),
        method=method,
        metric=prep.metric_name,
        config=config,
        clean_metric=clean_sum / n,
        corrupted_metric=corr_sum / n,
        n_examples=n,
        seconds=time.perf_counter() - t0,
    )


__all__ = ["gradient_edge_scores"]
