"""User-facing errors: printed as one message (no traceback) with a non-zero exit."""

from hydra.errors import CompactHydraException

__all__ = ["UserError"]


class UserError(CompactHydraException):
    """A problem with the user's input — a path, an option, a value — that a message explains.

    Hydra prints a ``CompactHydraException`` as its message alone and exits with status 1; in a
    multirun the job is recorded as failed and the sweep goes on.
    """
