"""Several devices: TransformerLens's device_map passes through, and a split model is told, not broken."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.config import RunConfig
from circuitwise.errors import ConfigError, ModelLoadError
from circuitwise.models.weights import supports


def test_device_map_on_one_device_gives_the_same_numbers(tmp_path):
    common = dict(task="opposites", model="bundled", n=12, patching=("heads",))
    plain = cw.run(RunConfig.build(**common, out=tmp_path / "plain")).results
    mapped = cw.run(RunConfig.build(**common, device_map="auto", out=tmp_path / "mapped")).results
    assert mapped.baseline.logit_diff == pytest.approx(plain.baseline.logit_diff, abs=1e-5)
    assert mapped.patching["heads"].config.engine == plain.patching["heads"].config.engine == "cone"
    assert mapped.circuit is not None and mapped.circuit.n_edges == plain.circuit.n_edges


def test_placement_options_exclude_each_other_before_any_work():
    with pytest.raises(ConfigError, match="exclude each other"):
        RunConfig.build(task="opposites", device="cpu", device_map="auto")
    with pytest.raises(ConfigError, match="--device-map: Input should be 'auto', 'balanced' or 'sequential'"):
        RunConfig.build(task="opposites", device_map="everywhere")
    with pytest.raises(ModelLoadError, match="CUDA devices are visible" if torch.cuda.is_available()
                       else "none is visible. Leave --n-devices out"):
        cw.load_model("bundled", n_devices=torch.cuda.device_count() + 1)


def test_max_memory_reaches_the_loader_as_each_devices_cap(monkeypatch):
    """--max-memory with a device map is accelerate's per-device cap (TransformerLens passes it through);
    an explicit {module: device} map places the layers itself, and one device gets no map at all."""
    from transformer_lens.model_bridge import TransformerBridge

    seen: list[dict] = []
    boot = TransformerBridge.boot_transformers

    def record(*a, **k):
        seen.append(k)
        plain = {key: v for key, v in k.items() if key not in ("device_map", "n_devices", "max_memory", "device")}
        return boot(*a, **plain, device="cpu")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", record)
    cw.load_model("bundled", device_map="sequential", max_memory=3 * 2**30)
    cw.load_model("bundled", device_map={"": "cpu"}, max_memory=3 * 2**30)
    cw.load_model("bundled", device="cpu", max_memory=3 * 2**30)
    n = torch.cuda.device_count()
    assert seen[0]["max_memory"] == ({i: 3 * 2**30 for i in range(n)} if n else {"cpu": 3 * 2**30})
    assert seen[0]["device_map"] == "sequential"
    assert "max_memory" not in seen[1] and seen[1]["device_map"] == {"": "cpu"}
    assert "max_memory" not in seen[2] and "device_map" not in seen[2]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    from circuitwise.models.loading import split_max_memory

    assert split_max_memory(100, "balanced", 2) == {0: 100, 1: 100}  # exactly the n_devices GPUs
    assert split_max_memory(100, "auto") == {0: 100, 1: 100, 2: 100, 3: 100}
    assert split_max_memory(None, "auto") is None


class _Split:
    """Stands in for a bridge with weights offloaded by its device map (on meta until loaded)."""

    def __init__(self, model):
        self._model = model

    def parameters(self):
        yield torch.zeros(1)
        yield torch.zeros(1, device="meta")

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_offloaded_weights_are_left_to_the_hook_engine_with_the_reason():
    # A split over devices is followed by the engines (test_device_split.py); weights offloaded to
    # disk have no values outside the bridge's own forward.
    model = cw.load_model("bundled", device="cpu")
    assert supports(model) is None
    why = supports(_Split(model))
    assert why is not None and "offloaded" in why and "enough GPUs" in why
