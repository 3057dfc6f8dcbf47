"""The curated public API: every name in __all__ exists, is documented, and importing has no side effects."""

from __future__ import annotations

import subprocess
import sys

import circuitwise


def test_all_names_exist_and_are_documented():
    for name in circuitwise.__all__:
        obj = getattr(circuitwise, name)
        if callable(obj):
            assert obj.__doc__, f"circuitwise.{name} has no docstring"


def test_import_has_no_side_effects(tmp_path):
    code = "import circuitwise, os; print(sorted(os.listdir('.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]" and out.stderr == ""


def test_compare_is_public_and_configured_by_compare_config():
    from circuitwise.compare import compare as compare_fn

    assert circuitwise.compare is compare_fn and "compare" in circuitwise.__all__
    cfg = circuitwise.CompareConfig(a="numbers-digits", b="numbers-words")
    assert cfg.model == "bundled" and cfg.pairing == "auto" and cfg.task_b == "numbers-words"
