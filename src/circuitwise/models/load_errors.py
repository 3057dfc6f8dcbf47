"""Turn whatever transformers or TransformerLens raise while loading into a ModelLoadError with the fix.

Loading goes through three libraries (huggingface_hub, transformers, TransformerLens), each with its
own exception types and wording; a user should never see their tracebacks. The original exception
stays chained (``raise … from e``) for ``--debug``-style inspection and for bug reports.
"""

from __future__ import annotations

import json
from pathlib import Path

from circuitwise.errors import ModelLoadError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json", "vocab.txt")
FAMILY_HINT = (
    "circuitwise loads the dense decoder families TransformerLens 4.3 supports (GPT-2, OPT, GPT-Neo, "
    "GPT-J, Pythia/GPT-NeoX, Llama, Mistral, Qwen2/3, Gemma 1/2/3, Phi, Phi-3, OLMo 2)"
)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_local_folder(path: Path, shown: str) -> None:
    """The problems of a local checkpoint folder that can be named before any loading."""
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(
            f"{shown}/config.json is not valid JSON ({e}). Repair it, or re-save the checkpoint "
            "with `model.save_pretrained(dir)`."
        ) from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        raise ModelLoadError(
            f"{shown}/config.json has no \"model_type\" (e.g. \"gpt2\", \"llama\"), so neither "
            "transformers nor TransformerLens can tell which architecture it is. Re-save the "
            "checkpoint with `model.save_pretrained(dir)`."
        )
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{shown} has no tokenizer files (none of {', '.join(TOKENIZER_FILES)}). Save the "
            "model's tokenizer next to the weights with `tokenizer.save_pretrained(dir)`."
        )


def check_causal(bridge, shown: str) -> None:
    """Refuse what TransformerLens boots but is no next-token predictor (BERT, T5, vision towers).

    Every analysis reads the logits at a prompt's last token as the model's next-token answer; on
    a masked or encoder-decoder model those numbers would be meaningless, silently.
    """
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # a transformers without the table: cannot tell, so do not refuse
        return
    cls = type(getattr(bridge, "original_model", None)).__name__
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if cls not in causal and not cls.endswith(("ForCausalLM", "LMHeadModel")):
        raise ModelLoadError(
            f"{shown!r} is a {cls}, not a causal (decoder-only) language model, and circuitwise "
            f"analyses next-token predictions. {FAMILY_HINT}."
        )


def boot_error(shown: str, e: BaseException, *, device: str) -> ModelLoadError:
    """The ModelLoadError for an exception raised while booting the bridge."""
    import torch

    msg = _first_line(e)
    low = str(e).lower()
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in low:
        return ModelLoadError(
            f"Not enough memory on {device} to load {shown!r} ({msg}). Free memory, use a smaller "
            "model, or pick another device with --device (e.g. --device cpu)."
        )
    if "not a valid json" in low:
        return ModelLoadError(f"{shown}: {msg} Repair config.json or re-save the checkpoint.")
    if "does not recognize this architecture" in low or "unrecognized model" in low:
        return ModelLoadError(
            f"transformers does not know the model_type of {shown!r} ({msg}). Check config.json's "
            f"\"model_type\", or upgrade transformers if the architecture is newer. {FAMILY_HINT}."
        )
    if "tokenizer" in low:
        return ModelLoadError(
            f"The tokenizer of {shown!r} could not be loaded ({msg}). Save a working tokenizer "
            "next to the weights with `tokenizer.save_pretrained(dir)` (tokenizer.json is best)."
        )
    if type(e).__name__ == "SafetensorError" or "safetensors" in low or "header" in low:
        return ModelLoadError(
            f"The weights of {shown!r} cannot be read ({msg}). The .safetensors file is damaged or "
            "incomplete: download or save it again."
        )
    if isinstance(e, OSError):
        return ModelLoadError(
            f"Could not load {shown!r}: {msg}. Check the name on huggingface.co, or pass a local "
            "checkpoint folder."
        )
    return ModelLoadError(
        f"TransformerLens cannot bridge {shown!r} ({type(e).__name__}: {msg}). {FAMILY_HINT}; if "
        "this model is one of them, report it with its config.json."
    )


__all__ = ["boot_error", "check_causal", "check_local_folder"]
