"""What the audit log raises.

The tree::

    AuditError                 the root; never raised bare
    ├── AuditUnavailable       503 audit-unavailable: the store could not be written or read
    ├── ChainBroken            the chain does not verify, so the log refuses to sign or prune
    └── KeyFileError           a checkpoint key file is missing, unreadable or not Ed25519
        (also a ValueError)

The gateway translates these at its boundary into its own error tree (its
``AuditUnavailable`` shares the problem type below); SQLAlchemy and driver
exceptions (:data:`DATABASE_ERRORS`) are translated by the store's modules
and never leave this package.
"""

from __future__ import annotations

import sqlite3
from typing import ClassVar

import asyncpg
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["DATABASE_ERRORS", "AuditError", "AuditUnavailable", "ChainBroken", "KeyFileError"]

# What a database that cannot be reached or written looks like from the store
# (the PostgreSQL append speaks asyncpg directly, so its errors too).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
    OSError,
    TimeoutError,
)


class AuditError(Exception):
    """Root of every error the audit package raises on purpose."""


class AuditUnavailable(AuditError):
    """The audit store cannot be written (or read): callers must fail closed.

    Records are returned only after their event is durable (privacy notice,
    "accountable"), so the gateway answers 503 with no data when it sees this.
    """

    problem: ClassVar[str] = "audit-unavailable"
    status: ClassVar[int] = 503
    title: ClassVar[str] = "Audit log unavailable"


class ChainBroken(AuditError):
    """The stored chain does not verify; signing or pruning over it would hide that."""


class KeyFileError(AuditError, ValueError):
    """A checkpoint signing key file cannot be used."""
