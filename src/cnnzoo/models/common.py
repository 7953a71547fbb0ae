"""What every family shares: the stems, and the rule that picks one from the image size."""

from __future__ import annotations

__all__ = ["SMALL_STEM_MAX_SIZE", "STEMS", "stem_for"]

# "imagenet": the paper's stem for 224 px images; "small": a 3x3 stride-1 stem for 28-64 px
STEMS = ("imagenet", "small")
SMALL_STEM_MAX_SIZE = 64


def stem_for(image_size: int) -> str:
    """``small`` (3x3 stride-1, no max-pool) for images of at most 64 pixels a side, ``imagenet``
    (the paper's stride-4 stem, which would leave almost nothing of a 28 px digit) above."""
    return "small" if int(image_size) <= SMALL_STEM_MAX_SIZE else "imagenet"
