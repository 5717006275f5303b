"""The shared ``Registry`` behind the CRM, redaction and dataset registries."""

from __future__ import annotations

import pytest

from dejavu._registry import Registry


def _registry() -> Registry[object]:
    reg: Registry[object] = Registry("widget", label="widget name")

    @reg.register
    class Gear:
        name = "gear"

        def __init__(self, teeth: int = 8, *args: int, **kwargs: int) -> None:
            pass

    @reg.register
    class Axle:
        name = "axle"

    return reg


def test_names_order_lookup_and_options() -> None:
    reg = _registry()
    assert reg.names() == ["axle", "gear"] and reg.in_order() == ["gear", "axle"]
    assert reg.names("g*") == ["gear"] and "gear" in reg and len(reg) == 2
    assert reg.options("gear") == ["teeth"]  # *args / **kwargs are not named options
    with pytest.raises(ValueError, match=r"unknown widget name 'cog'; allowed: 'axle', 'gear'"):
        reg.get("cog")
    with pytest.raises(ValueError, match="must be a string"):
        reg.get(3)  # type: ignore[arg-type]


def test_register_refuses_nameless_and_taken_names() -> None:
    reg = _registry()

    class Nameless:
        pass

    class OtherGear:
        name = "gear"

    with pytest.raises(ValueError, match="needs a non-empty class attribute `name`"):
        reg.register(Nameless)
    with pytest.raises(ValueError, match="widget name 'gear' is already registered by Gear"):
        reg.register(OtherGear)
    saved = dict(reg)
    reg.clear()
    assert reg.names() == []
    reg.update(saved)
    assert reg.in_order() == ["gear", "axle"]
