"""A hub name with no network fails at once — one connection attempt, no retries — naming the offline options.

Never touches the network: the Hub's endpoint is pointed at a closed port on this machine (refused at
once), or at a listening socket here when a reachable Hub is what is tested.
"""

from __future__ import annotations

import socket

import pytest

import circuitwise as cw
from circuitwise.errors import ModelLoadError, TaskError
from circuitwise.models import hub


@pytest.fixture
def no_hub(monkeypatch):
    """Network on (HF_HUB_OFFLINE unset), but nothing answers at the endpoint; downloads must not start."""
    with socket.socket() as s:  # a port that was free a moment ago: connecting to it is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")

    def no_download(*_a, **_k):
        raise AssertionError("a download (with its retries) was tried after the Hub was found unreachable")

    from transformers import AutoConfig, AutoTokenizer

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", no_download)
    monkeypatch.setattr(AutoConfig, "from_pretrained", no_download)


def _offline_options(msg: str) -> None:
    assert "--model bundled" in msg and "bundled-llama" in msg and "local Hugging Face checkpoint folder" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "cache" in msg


def test_tasks_show_with_a_hub_name_fails_at_once(no_hub):
    from tests.unit.cli.conftest import invoke

    r = invoke("tasks", "show", "opposites", "--model", "some-org/not-cached-model")
    assert r.exit_code == 2 and "cannot be reached" in r.output and "127.0.0.1" in r.output
    _offline_options(r.output)


def test_load_model_with_a_hub_name_fails_at_once(no_hub):
    with pytest.raises(ModelLoadError) as e:
        cw.load_model("some-org/not-cached-model")
    _offline_options(str(e.value))


def test_hf_hub_offline_is_named_when_it_is_the_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskError, match="cannot be reached: HF_HUB_OFFLINE is set, and 'some-org/not-cached-model'"):
        hub.check_hub("some-org/not-cached-model", error=TaskError)


def test_a_cached_model_loads_in_offline_mode(no_hub, monkeypatch):
    monkeypatch.setattr(hub, "in_hub_cache", lambda name: True)
    assert hub.check_hub("gpt2") is True  # offline, from the cache
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    with hub.hub_offline(True):
        assert constants.HF_HUB_OFFLINE is True  # what transformers asks, not only the environment
    assert constants.HF_HUB_OFFLINE == before


def test_one_connection_decides_reachability(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub.hub_reachable() and hub.check_hub("anything") is False  # online: the Hub is used as usual
    monkeypatch.setenv("HF_ENDPOINT", "not a url at all:99999")
    assert not hub.hub_reachable()
