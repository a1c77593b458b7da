"""Records tests run against the live gateway + sandbox stack of tests/gateway."""

from __future__ import annotations

from tests.gateway.conftest import stack  # noqa: F401 - re-exported fixture
from tests.observability.conftest import collector  # noqa: F401 - re-exported fixture
