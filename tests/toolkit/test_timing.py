"""dejavu.toolkit.timing: the interleaved timing loop the benchmarks' ratios come from."""

from __future__ import annotations

import pytest

from dejavu.toolkit import timing


def test_calls_alternate_and_the_warmup_rounds_are_not_timed(monkeypatch) -> None:
    calls: list[str] = []
    # A clock that advances by a known amount per call: a's calls take 1, 2, 3, 4 s
    # (the first is warm-up), b's take 10 s each.
    durations = iter([1, 10, 2, 10, 3, 10, 4, 10])
    now = [0.0]

    def make(name: str):
        def call() -> None:
            calls.append(name)
            now[0] += next(durations)

        return call

    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    times = timing.interleaved_times({"a": make("a"), "b": make("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert times == {"a": [2, 3, 4], "b": [10, 10, 10]}


def test_summary_is_the_median_and_the_quartiles() -> None:
    # statistics.quantiles' default ("exclusive") method on 1..8: positions 2.25 and 6.75.
    summary = timing.time_summary([8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0])
    assert summary["median_s"] == 4.5
    assert summary["q1_s"] == pytest.approx(2.25) and summary["q3_s"] == pytest.approx(6.75)
    assert timing.time_summary([3.0]) == {
        "median_s": 3.0, "q1_s": 3.0, "q3_s": 3.0, "times_s": [3.0]
    }  # fmt: skip


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="repeats >= 1"):
        timing.interleaved_times({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="warmup >= 0"):
        timing.interleaved_times({"a": lambda: None}, repeats=1, warmup=-1)
    with pytest.raises(ValueError, match="at least one function"):
        timing.interleaved_times({}, repeats=1)
    with pytest.raises(ValueError, match="at least one time"):
        timing.time_summary([])
