"""User-facing errors: printed as one message (no traceback) with a non-zero exit."""

from __future__ import annotations

from collections.abc import Iterable

from hydra.errors import CompactHydraException

__all__ = ["UserError", "check_choice"]


class UserError(CompactHydraException):
    """A problem with the user's input — a path, an option, a value — that a message explains.

    Hydra prints a ``CompactHydraException`` as its message alone and exits with status 1; in a
    multirun the job is recorded as failed and the sweep goes on.
    """


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` naming ``name`` and the
    choices (the entry points print it as one line)."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of: {', '.join(map(str, choices))}")
    return value
