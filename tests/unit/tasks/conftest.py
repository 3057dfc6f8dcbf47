"""The real GPT-2 tokenizer alone (no weights): what the task checks in the issue are run with."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory):
    from tests.helpers import gpt2_tokenizer_files

    return gpt2_tokenizer_files(tmp_path_factory.mktemp("gpt2-tokenizer"))


@pytest.fixture(scope="session")
def gpt2(gpt2_dir):
    """A :class:`TokenizerModel` over GPT-2's tokenizer: tokenize_task runs on it like on GPT-2."""
    from circuitwise.tasks.tokenizer import load_tokenizer

    return load_tokenizer(str(gpt2_dir))
