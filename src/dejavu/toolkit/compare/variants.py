"""What a comparison trains: its variants (name -> overrides) and its seeds.

Example:
    >>> parse_variant("lowpass:dejavu.redaction=lowpass")
    ('lowpass', ['dejavu.redaction=lowpass'])
    >>> resolve_seeds(None, [4, 2])
    [4, 2]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["default_variants", "parse_variant", "parse_variants", "resolve_seeds"]


def default_variants() -> dict[str, list[str]]:
    """The two variants of a DejaVu claim: the baseline and DejaVu itself."""
    return {"baseline": ["dejavu.enabled=false"], "dejavu": ["dejavu.enabled=true"]}


def parse_variant(text: str) -> tuple[str, list[str]]:
    """Parse ``"NAME:key=value,key=value"`` into ``(NAME, ["key=value", ...])``.

    Commas inside a value (``redaction.cutoff=[0.1,0.3]``) are kept: a new
    override starts only where a comma is followed by ``key=``.

    Example:
        >>> parse_variant("bandstop:dejavu.redaction=bandstop,dejavu.band=[0.1,0.3]")
        ('bandstop', ['dejavu.redaction=bandstop', 'dejavu.band=[0.1,0.3]'])
    """
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(
            f"variant must look like NAME:key=value[,key=value...] with NAME made of letters, "
            f"digits, '_', '-' or '.', got {text!r}"
        )
    overrides = [o.strip() for o in re.split(r",(?=\s*[A-Za-z_][\w.]*=)", rest) if o.strip()]
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"variant {name!r}: override must be key=value, got {o!r}")
    return name, overrides


def parse_variants(texts: Sequence[str]) -> dict[str, list[str]]:
    """Parse several ``NAME:overrides`` strings (see :func:`parse_variant`); names must differ.

    Example:
        >>> parse_variants(["a:dejavu.enabled=false", "b:dejavu.enabled=true"])
        {'a': ['dejavu.enabled=false'], 'b': ['dejavu.enabled=true']}
    """
    variants: dict[str, list[str]] = {}
    for text in texts:
        name, overrides = parse_variant(text)
        if name in variants:
            raise ValueError(f"variant name {name!r} is given twice; names must be unique")
        variants[name] = overrides
    return variants


def resolve_seeds(num_seeds: int | None, seed_list: Sequence[int] | None) -> list[int]:
    """Seeds ``0..num_seeds-1`` or an explicit list (exactly one of the two).

    Example:
        >>> resolve_seeds(3, None)
        [0, 1, 2]
    """
    if (num_seeds is None) == (seed_list is None):
        raise ValueError("give either seeds (a count) or seed_list (explicit seeds), not both")
    if seed_list is not None:
        seeds = [int(s) for s in seed_list]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seed_list must be non-empty and without repeats, got {seed_list!r}")
        return seeds
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
        raise ValueError(f"seeds must be a positive int, got {num_seeds!r}")
    return list(range(num_seeds))
