"""Each ground-truth case booted once per session (checkpoint → TransformerBridge), and its task."""

from __future__ import annotations

import pytest

from tests.unit.circuits.ground_truth.cases import BY_NAME, CASES

_loaded: dict[str, tuple] = {}


@pytest.fixture(scope="session")
def ground_truth_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ground-truth")


@pytest.fixture(scope="session")
def booted(ground_truth_root):
    """``booted(name)``: ``(case, model, tok)``, the case's checkpoint booted by the real loader."""

    def get(name: str):
        if name not in _loaded:
            import circuitwise as cw

            case = BY_NAME[name]
            model = cw.load_model(str(case.build(ground_truth_root / name)), device="cpu")
            tok = cw.tokenize_task(model, case.task(), need_corrupted=True)[0]
            _loaded[name] = (case, model, tok)
        return _loaded[name]

    return get


@pytest.fixture(params=[c.name for c in CASES])
def case_name(request):
    return request.param
