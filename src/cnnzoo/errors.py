"""User-facing errors: printed as one message (no traceback) with a non-zero exit."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from hydra.errors import CompactHydraException

__all__ = ["UserError", "as_user_error", "check_choice", "user_errors"]


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


def as_user_error(error: BaseException) -> UserError | None:
    """The one-line error for a failure the user's input caused, or None for anything else.

    - a ``UserError`` anywhere in the chain (OmegaConf wraps one raised in a resolver);
    - a bad value or argument refused by a constructor the config names: Hydra wraps the
      ``ValueError``/``TypeError`` in an ``InstantiationException`` (several, when one target
      builds another); the message names the config key, e.g. ``model.net: stem='x' is not one
      of: imagenet, small``.
    """
    from hydra.errors import InstantiationException

    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for link in chain:
        if isinstance(link, UserError):
            return link
    keys = []
    for link in chain:
        if isinstance(link, InstantiationException):
            match = re.search(r"^full_key: (\S+)$", str(link), flags=re.M)
            if match and match.group(1) not in keys:
                keys.append(match.group(1))
            continue
        if isinstance(link, (ValueError, TypeError)) and keys:
            # outer to inner: `model` building its `net` is model.net
            key = keys[0]
            for inner in keys[1:]:
                key = inner if inner.startswith(key) else f"{key}.{inner}"
            return UserError(f"{key}: {link}")
        break
    return None


@contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise a failure the user's input caused as its one-line ``UserError``."""
    try:
        yield
    except Exception as error:
        user_error = as_user_error(error)
        if user_error is not None and user_error is not error:
            raise user_error from error
        raise
