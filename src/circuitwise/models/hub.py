"""Whether the Hugging Face Hub can be used for a model name, decided once, before any download.

Without this, a hub name on a machine with no network goes to huggingface_hub and transformers,
which retry every file they look for (one user saw 48 retry warnings and 53 s before the error).
One short connection attempt to the Hub's endpoint (or to the HTTPS proxy, where one is set)
decides instead: reachable, it is used as usual; unreachable (or ``HF_HUB_OFFLINE=1``), a model in
the local cache is loaded from it in offline mode, and anything else fails at once with the
offline options named.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from circuitwise.errors import CircuitwiseError, ModelLoadError

DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT = 3.0
_TRUE = ("1", "on", "yes", "true")


def offline_requested() -> bool:
    """Whether the user asked for offline mode (HF_HUB_OFFLINE, or transformers' TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def endpoint() -> str:
    # Read at call time (huggingface_hub reads it once, at import): a test or a notebook may set it later.
    return os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT


def _address() -> tuple[str, int]:
    """Where a download would first connect: the HTTPS proxy if one is set, else the endpoint."""
    proxy = next((os.environ[v] for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(v)), None)
    url = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else endpoint())
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)


def hub_reachable(timeout: float = CONNECT_TIMEOUT) -> bool:
    """One connection attempt, no retries: False when offline mode is asked for or nothing answers."""
    if offline_requested():
        return False
    try:
        with socket.create_connection(_address(), timeout=timeout):
            return True
    except (OSError, ValueError):  # no DNS, refused, unroutable (timeout), a malformed HF_ENDPOINT
        return False


def in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 — a cache probe must never be the reason a load fails
        return False


def offline_help(name: str) -> str:
    from circuitwise.models.bundled import BUNDLED_NAMES

    why = ("The Hugging Face Hub cannot be reached: HF_HUB_OFFLINE is set" if offline_requested()
           else f"The Hugging Face Hub ({urlsplit(endpoint()).hostname}) cannot be reached")
    return (
        f"{why}, and {name!r} is not in the local Hugging Face cache. Offline options: a bundled model "
        f"(--model {' or --model '.join(BUNDLED_NAMES)}); a local Hugging Face checkpoint folder (config.json, "
        "model.safetensors and tokenizer files), e.g. one saved with `model.save_pretrained(dir)` and "
        "`tokenizer.save_pretrained(dir)` on a machine with network; or a populated Hugging Face cache "
        "(copy ~/.cache/huggingface/hub here, or point HF_HOME at one) with HF_HUB_OFFLINE=1."
    )


def check_hub(name: str, error: type[CircuitwiseError] = ModelLoadError) -> bool:
    """Decide, once, how the hub name ``name`` can be loaded: False to use the Hub as usual, True to
    load it from the local cache in offline mode (:func:`hub_offline`); else raise ``error`` with
    the offline options."""
    if hub_reachable():
        return False
    if in_hub_cache(name):
        return True
    raise error(offline_help(name))


@contextmanager
def hub_offline(active: bool = True) -> Iterator[None]:
    """huggingface_hub's (and so transformers') offline mode, for a load from the cache.

    huggingface_hub reads HF_HUB_OFFLINE once, at import, so the environment variable alone is too
    late here: its constant is set for the duration as well.
    """
    if not active:
        yield
        return
    from huggingface_hub import constants

    old_env, old_const = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


__all__ = ["check_hub", "endpoint", "hub_offline", "hub_reachable", "in_hub_cache", "offline_help",
           "offline_requested"]
