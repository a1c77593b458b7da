"""The trust suite drives the same live gateway + sandbox stack as tests/gateway."""

from __future__ import annotations

from tests.gateway.conftest import stack

__all__ = ["stack"]
