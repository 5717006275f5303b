"""Side-by-side timing: the calls being compared interleaved, so that load on the machine
(another training, thermal throttling) falls on every one of them alike.

The benchmarks report ratios measured this way (``benchmarks/overhead.py``,
``benchmarks/step_time.py``, ``benchmarks/redaction.py``), never absolute times
measured one after the other.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ["interleaved_times", "time_summary"]


def interleaved_times(
    calls: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 0
) -> dict[str, list[float]]:
    """Seconds per call of each function, the calls interleaved round by round.

    Each round calls every function once, in the mapping's order; the first
    ``warmup`` rounds are not timed (allocator, kernel selection, caches).

    Args:
        calls: name -> a function of no arguments.
        repeats: timed rounds (so timed calls of each function).
        warmup: untimed rounds before them.

    Returns:
        name -> the ``repeats`` times in seconds, in call order.

    Raises:
        ValueError: ``repeats < 1``, ``warmup < 0`` or no calls.

    Example:
        >>> times = interleaved_times({"a": lambda: None, "b": lambda: None}, repeats=3)
        >>> {name: len(t) for name, t in times.items()}
        {'a': 3, 'b': 3}
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if not calls:
        raise ValueError("need at least one function to time, got none")
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times[name].append(elapsed)
    return times


def time_summary(times: list[float]) -> dict[str, float | list[float]]:
    """Median and quartiles of one function's times (the times themselves kept).

    Returns:
        ``{"median_s", "q1_s", "q3_s", "times_s"}``; with one time, all three are it.

    Example:
        >>> time_summary([4.0, 1.0, 3.0, 2.0])["median_s"]
        2.5
    """
    if not times:
        raise ValueError("need at least one time, got none")
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_s": statistics.median(times), "q1_s": q[0], "q3_s": q[2], "times_s": times}
