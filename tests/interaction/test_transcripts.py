"""Run every tests/interaction/testdata/*.txt transcript. LICTOR_REWRITE=1 regenerates them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .runner import run_file

DATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", sorted(DATA.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    problems = run_file(path, rewrite=os.environ.get("LICTOR_REWRITE") == "1")
    assert not problems, "\n".join(problems) + "\n(regenerate with LICTOR_REWRITE=1 after review)"
