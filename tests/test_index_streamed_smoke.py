"""Smoke run of the streamed-replies rebuild benchmark: a tiny store, code against code in fresh processes."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from benchmarks import index_streamed

ROOT = Path(__file__).resolve().parent.parent


def test_streamed_replies_are_what_the_benchmark_says() -> None:
    """Each session is a question and a reply replaced ``R`` times, its versions growing by a step of words."""
    [(key, (said, *versions))] = index_streamed.texts(1, 3, seed=16)
    assert key == "session000000"
    assert len(said.split()) == index_streamed.USER_WORDS
    assert [len(version.split()) for version in versions] == [4, 8, 12, 16]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(versions))


def test_it_measures_this_code_against_another_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A round of fresh processes on each tree, a row for each shape, with every sample, the median and the ratio
    (old sessions edited at the end too)."""
    assert index_streamed.main(["--sessions", "4", "--replacements", "0", "2", "--streams", "2", "--late", "3",
                                "--rebuilds", "1", "--rounds", "1", "--against", str(ROOT), "--dir",
                                str(tmp_path)]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0] == f"| replacements a session | {ROOT.name} | this | this / {ROOT.name} |"
    for row, replacements in zip(rows[1:], ["0", "2"], strict=True):
        cells = row.strip("| ").split(" | ")
        assert cells[0] == replacements
        assert all(re.fullmatch(r"\d+\.\d{3} s \(\d+\.\d{3}\)", cell) for cell in cells[1:3])
        assert re.fullmatch(r"\d+\.\d\dx", cells[3])
    assert not list(tmp_path.iterdir())  # the stores are removed


@pytest.mark.parametrize("arguments", [["--streams", "0"], ["--late", "-1"]])
def test_it_refuses_counts_below_their_least(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_status:
        index_streamed.main(arguments)
    assert exit_status.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
