"""User-facing errors: printed as one message (no traceback) with a non-zero exit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from hydra.errors import CompactHydraException

__all__ = ["ConfigValueError", "UserError", "as_user_error", "check_choice", "user_errors"]


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


class ConfigValueError(UserError):
    """A value the config gave a constructor was refused: ``model.net: stem='x' is not one of…``.

    ``key`` is the config node whose constructor refused it (``model.net``), ``reason`` the
    constructor's own ``ValueError``/``TypeError``.
    """

    def __init__(self, key: str, reason: BaseException) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def as_user_error(error: BaseException, key: str | None = None) -> UserError | None:
    """The one-line error for a failure the user's input caused, or None for anything else.

    Recognised by type: a ``UserError`` anywhere in the chain (OmegaConf wraps one raised in a
    resolver; a ``ConfigValueError`` of a node built inside ``key`` gets ``key.`` in front); with
    ``key`` (the config node being built), a constructor's ``ValueError``/``TypeError`` that
    Hydra's ``InstantiationException`` wraps.
    """
    from hydra.errors import InstantiationException

    chain = _chain(error)
    for link in chain:
        if isinstance(link, ConfigValueError):
            return ConfigValueError(f"{key}.{link.key}", link.reason) if key else link
        if isinstance(link, UserError):
            return link
    if key is None or not any(isinstance(link, InstantiationException) for link in chain):
        return None
    for link in chain:
        if isinstance(link, (ValueError, TypeError)) and not isinstance(
            link, InstantiationException
        ):
            return ConfigValueError(key, link)
    return None


@contextmanager
def user_errors(key: str | None = None) -> Iterator[None]:
    """Re-raise a failure the user's input caused as its one-line ``UserError``; ``key``: the
    config node built inside (``with user_errors("model"): instantiate(cfg.model)``)."""
    try:
        yield
    except Exception as error:
        user_error = as_user_error(error, key)
        if user_error is not None and user_error is not error:
            raise user_error from error
        raise
