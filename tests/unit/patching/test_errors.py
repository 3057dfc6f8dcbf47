"""Bad input fails early with a message that says how to fix it."""

from __future__ import annotations

import pytest

import circuitwise as cw
from circuitwise.errors import ConfigError, TaskError
from circuitwise.patching import activation_patching, attribution_patching


@pytest.mark.parametrize("fn", [activation_patching, attribution_patching])
def test_unknown_what_lists_the_choices(small_model, seed_tok, fn):
    with pytest.raises(ConfigError, match="Unknown patching sweep 'head'.*heads_by_pos"):
        fn(small_model, seed_tok, "head")


@pytest.mark.parametrize("fn", [activation_patching, attribution_patching])
def test_unknown_direction_explains_both(small_model, seed_tok, fn):
    with pytest.raises(ConfigError, match="denoise.*noise"):
        fn(small_model, seed_tok, "heads", direction="backwards")


def test_unknown_metric_and_engine(small_model, seed_tok):
    with pytest.raises(ConfigError, match="Unknown metric"):
        activation_patching(small_model, seed_tok, "heads", metric="accuracy")
    with pytest.raises(ConfigError, match="engine"):
        activation_patching(small_model, seed_tok, "heads", engine="fast")
    with pytest.raises(ConfigError, match="batch-size"):
        activation_patching(small_model, seed_tok, "heads", batch_size=0)


def test_missing_corrupted_prompts_say_how_to_add_them(small_model):
    task = cw.Task("plain", (cw.Example("A tortoise is old, but a kitten is", " young", " old"),))
    with pytest.raises(TaskError, match="corrupted.*--corruption"):
        activation_patching(small_model, task, "heads")


def test_out_that_is_a_file_is_refused_and_left_alone(small_model, seed_tok, tmp_path):
    f = tmp_path / "results.json"
    f.write_text("keep me")
    with pytest.raises(ConfigError, match="is a file"):
        activation_patching(small_model, seed_tok, "heads", out=f)
    assert f.read_text() == "keep me"
