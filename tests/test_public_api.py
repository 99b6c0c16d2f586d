"""The public API is what ``ladle.__all__`` lists, and every name in it exists."""

from __future__ import annotations

import ladle


def test_all_names_exist() -> None:
    """Every exported name is importable from the package."""
    for name in ladle.__all__:
        assert hasattr(ladle, name), name


def test_all_lists_every_public_name() -> None:
    """No public, non-module name is importable without being in __all__."""
    import types

    public = {
        name
        for name, value in vars(ladle).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(ladle.__all__) - {"__version__"}


def test_version_is_set() -> None:
    """The version comes from the installed package metadata."""
    assert ladle.__version__.count(".") >= 2
