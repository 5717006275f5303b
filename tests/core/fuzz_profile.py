"""Hypothesis settings shared by the fuzz tests (``tests/core/test_fuzz_*.py``).

Each fuzz test asks for its own example budget with :func:`fuzz`, sized so
that a whole fuzz file runs in well under a minute on one CPU core. The
profile ``dejavu-fuzz`` holds what they share (no deadline: a first call
builds cached DCT plans and is slow); ``DEJAVU_FUZZ_SCALE=10`` multiplies
every budget, for a longer local run::

    DEJAVU_FUZZ_SCALE=10 python -m pytest tests/core -k fuzz
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = "dejavu-fuzz"

settings.register_profile(
    PROFILE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)

SCALE = float(os.environ.get("DEJAVU_FUZZ_SCALE", "1"))


def fuzz(max_examples: int) -> settings:
    """The ``dejavu-fuzz`` profile with ``max_examples`` (times ``DEJAVU_FUZZ_SCALE``)."""
    return settings(
        settings.get_profile(PROFILE),
        max_examples=max(1, round(max_examples * SCALE)),
        deadline=None,
    )
