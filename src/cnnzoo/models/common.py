"""What every family shares: the stem choices and the check of a string choice."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["STEMS", "check_choice"]

# "imagenet": the paper's stem for 224 px images; "small": a 3x3 stride-1 stem for 28-64 px
STEMS = ("imagenet", "small")


def check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the argument and its valid values unless ``value`` is one."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
