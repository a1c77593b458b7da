from __future__ import annotations

import gateway.observability


def test_all_is_sorted_and_complete() -> None:
    """The package's __all__ is sorted and names only what it really exports."""
    exported = gateway.observability.__all__

    assert exported == sorted(exported, key=lambda name: (not name.isupper(), name))
    assert all(hasattr(gateway.observability, name) for name in exported)
