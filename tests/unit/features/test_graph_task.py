"""Task graphs: prompts of different lengths aligned by offset or by role, averaged so the sums close."""

import pytest

from circuitwise.errors import MemoryBudgetError
from circuitwise.features.attribute import LogitDiff, attribution_graph
from circuitwise.features.task_graph import task_graph
from circuitwise.tasks import Example, Task
from tests.unit.features.random_transcoders import random_set

TASK = Task("t", (
    Example("A tortoise is old, but a kitten is", " young", " old",
            roles={"ADJ": 14, "BUT": 19, "END": 32}),
    Example("The very big house was old, but the kitten is", " young", " old",
            roles={"ADJ": 26, "BUT": 31, "END": 44}),
))


def test_task_graph_averages_aligned_nodes_and_its_sums_close(tiny_model):
    tcs = random_set(tiny_model, "topk_skip")
    singles = [attribution_graph(tiny_model, tcs, ex.clean, LogitDiff(" young", " old")) for ex in TASK]
    for align in ("relative", "role"):
        g = task_graph(tiny_model, tcs, TASK, align=align)
        assert g.positions == "relative" and g.meta["n_prompts"] == 2 and len(g.prompts) == 2
        recv = list(range(g.features.stop)) + list(range(g.target_nodes.start, g.target_nodes.stop))
        gap = (g.adjacency[recv].sum(1) + g.bias[recv] - g.values.float()[recv]).abs().max()
        assert float(gap) < 1e-5
        # One target: the mean of the prompts' metrics.
        (t,) = g.nodes[g.target_nodes]
        assert t.value == pytest.approx(sum(s.nodes[-1].value for s in singles) / 2, abs=1e-6)
        # A node in both prompts: its edge into the target is the mean of the two.
        shared = [i for i in range(g.features.stop) if g.meta["node_counts"][i] == 2]
        assert shared
        i = shared[0]
        n = g.nodes[i]
        pos_label = g.meta["position_labels"][i]
        per = []
        for s, ex in zip(singles, TASK, strict=True):
            last = len(s.tokens[0]) - 1
            for j, m in enumerate(s.nodes):
                if m.kind == "feature" and (m.layer, m.feature) == (n.layer, n.feature) and \
                        _key(m.position, last, ex, align, tiny_model) == pos_label:
                    per.append(float(s.adjacency[-1, j]))
        assert len(per) == 2
        assert float(g.adjacency[g.target_nodes.start, i]) == pytest.approx(sum(per) / 2, abs=1e-6)
    roles = task_graph(tiny_model, tcs, TASK, align="role").meta["position_labels"]
    assert "END" in roles and "BUT+1" in roles
    with pytest.raises(MemoryBudgetError):
        task_graph(tiny_model, tcs, TASK, budget=50_000)


def _key(p, last, ex, align, model):
    from circuitwise.features.task_graph import _position_key
    from circuitwise.tasks.tokenize import tokenize_task

    tt, _ = tokenize_task(model, Task("one", (ex,)))
    return _position_key(p, last, tt.roles[0] if tt.roles else None, align)


def test_task_faithfulness_is_one_for_every_feature_and_between_for_a_pruned_graph(tiny_model):
    from circuitwise.errors import ConfigError
    from circuitwise.features.interventions import feature_faithfulness
    from circuitwise.features.prune import prune_graph
    from circuitwise.features.task_graph import task_faithfulness

    tcs = random_set(tiny_model, "jumprelu")
    g = task_graph(tiny_model, tcs, TASK, align="role")
    whole = task_faithfulness(tiny_model, tcs, g, TASK)
    assert whole.faithfulness == pytest.approx(1.0, abs=1e-6)
    pruned = prune_graph(g, 0.5, 0.9)
    # Per-node meta follows the kept nodes.
    full_label = {n.label: lab for n, lab in zip(g.nodes, g.meta["position_labels"], strict=True)}
    assert [full_label[n.label] for n in pruned.nodes] == pruned.meta["position_labels"]
    assert len(pruned.meta["node_counts"]) == pruned.n_nodes
    part = task_faithfulness(tiny_model, tcs, pruned, TASK)
    assert part.n_features < whole.n_features and part.none_metric == pytest.approx(whole.none_metric)
    # One prompt: the task score is that prompt's own feature_faithfulness.
    one = Task("one", TASK.examples[:1])
    g1 = task_graph(tiny_model, tcs, one)
    single = attribution_graph(tiny_model, tcs, TASK[0].clean, LogitDiff(" young", " old"))
    p1, ps = prune_graph(g1, 0.5, 0.9), prune_graph(single, 0.5, 0.9)
    assert task_faithfulness(tiny_model, tcs, p1, one).faithfulness == pytest.approx(
        feature_faithfulness(tiny_model, tcs, ps).faithfulness, abs=1e-5)
    with pytest.raises(ConfigError, match="not the ones"):
        task_faithfulness(tiny_model, tcs, g, Task("other", TASK.examples[::-1]))
