"""Whether a model's prompts start with BOS, known from its config alone (no weights loaded).

TransformerLens decides per architecture (``cfg.default_prepend_bos``: False for GPT-NeoX/Pythia,
Qwen2/3 and Phi, True for GPT-2, Llama, Gemma …). Commands that only need the tokenizer
(``circuitwise tasks --model``) must tokenize the way the loaded model will, or they would show
positions shifted by one.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def default_prepend_bos(name_or_path: str) -> bool:
    """TransformerLens's ``cfg.default_prepend_bos`` for this model; True (TL's default) if unknown."""
    try:
        import torch
        from transformers import AutoConfig
        # TL exposes no public "config only" path; these are what boot_transformers itself uses.
        from transformer_lens.factories.architecture_adapter_factory import ArchitectureAdapterFactory
        from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_config_from_hf
        from transformer_lens.model_bridge.sources._hf_format import determine_architecture_from_hf_config

        from circuitwise.models.loading import resolve_name

        target, _ = resolve_name(name_or_path)
        hf_config = AutoConfig.from_pretrained(target)
        arch = determine_architecture_from_hf_config(hf_config)
        cfg = build_bridge_config_from_hf(hf_config, arch, target, torch.float32)
        adapter = ArchitectureAdapterFactory.select_architecture_adapter(cfg)
        return bool(getattr(adapter.cfg, "default_prepend_bos", True))
    except Exception as e:  # a convention probe must never be the reason a command fails
        log.debug("default_prepend_bos(%s) unknown (%s); assuming True", name_or_path, e)
        return True


__all__ = ["default_prepend_bos"]
