"""The base of every named domain error.

Each error carries a stable machine ``code`` and, where one input is to blame, the ``param``
that names it. ``api/errors.py`` maps these classes to HTTP statuses in one place.
"""

from __future__ import annotations


class DomainError(Exception):
    """An expected failure of a business rule, reported to the caller by name."""

    code: str = "domain_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidInput(DomainError):
    """A value that can never be valid (a negative quantity, an unknown country)."""

    code = "invalid_input"


class NotFound(DomainError):
    """The thing named does not exist, or belongs to another tenant (the same to a caller)."""

    code = "not_found"


class InvalidTransition(DomainError):
    """The aggregate's lifecycle forbids this change in its current state."""

    code = "invalid_state"
