"""Which files of an image folder are images: listed in one pass, headers checked once.

Decoding every file at every setup does not scale (ImageNet's 1.28 M files take hours), so setup
only lists the files (one ``os.scandir`` a folder, extension filter) and opens each one's
*header* — PIL's ``Image.open`` reads no pixels — the first time it is seen. The result is cached
outside the dataset folder, which may be read-only, keyed by path, mtime and size: a later setup
costs one ``stat`` a file. Decoding every image is the ``python -m cnnzoo.data verify`` tool's job.

Every reader of image files — training, eval, predict, ``verify`` — opens them through
``load_image``: an image over PIL's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``, a decompression
bomb: a few kilobytes that decode to gigabytes) or one PIL cannot decode raises
``UnreadableImage`` naming the reason, which each reader turns into a skip with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from operator import attrgetter
from pathlib import Path

from PIL import Image, ImageOps
from torchvision.datasets.folder import IMG_EXTENSIONS

from cnnzoo.errors import UserError

__all__ = [
    "CHECKS",
    "IMAGE_SUFFIXES",
    "HeaderCache",
    "UnreadableImage",
    "cache_dir",
    "decode_errors",
    "find_images",
    "image_files",
    "load_image",
]

log = logging.getLogger(__name__)

# header: open each new or changed file's header (cached); none: trust the file names
CHECKS = ("header", "none")
# 2: images over PIL's pixel limit are bad (1 cached them as readable up to twice the limit)
CACHE_VERSION = 2
# what PIL raises for a file it cannot identify or parse (UnidentifiedImageError is an OSError)
UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
# the files predict.py classifies (by suffix)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_MAGIC = re.compile(r"[*?[]")  # what makes a path component a glob pattern


class UnreadableImage(Exception):
    """An image file that cannot be decoded, or one over PIL's pixel limit (``str``: why)."""


@contextlib.contextmanager
def _no_bomb_warnings() -> Iterator[None]:
    """PIL warns of an image over ``MAX_IMAGE_PIXELS`` (and refuses it only over twice that);
    ``_open_header`` refuses it instead, naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


# Workaround: PIL only warns of an image between once and twice its pixel limit, and decodes it
# (measured on pillow 13.0.0; tests/test_upstream.py::
# test_pil_only_warns_of_an_image_under_twice_its_pixel_limit)
def _open_header(path: str | Path) -> Image.Image:
    """PIL's lazy open (the header, no pixels), refusing an image over ``MAX_IMAGE_PIXELS``:
    decoding one takes gigabytes, in every worker process that meets it."""
    image = Image.open(path)
    limit = Image.MAX_IMAGE_PIXELS
    pixels = image.width * image.height
    if limit is not None and pixels > limit:
        image.close()
        raise Image.DecompressionBombError(
            f"Image size ({pixels} pixels) exceeds limit of {limit} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS), could be decompression bomb DOS attack."
        )
    return image


def load_image(path: str | Path, mode: str, *, exif_transpose: bool = False) -> Image.Image:
    """The image at ``path`` decoded in full and converted to ``mode`` (``L``, ``RGB``):
    palette, alpha, 16-bit and CMYK images too; ``exif_transpose``: turned upright as its EXIF
    orientation says. Raises ``UnreadableImage`` for anything PIL cannot decode and for an
    image over ``PIL.Image.MAX_IMAGE_PIXELS``."""
    try:
        with _no_bomb_warnings(), _open_header(path) as image:
            upright = ImageOps.exif_transpose(image) if exif_transpose else image
            return upright.convert(mode)
    # anything at all: PIL raises every kind of error for a hostile file
    except Exception as error:
        raise UnreadableImage(f"{type(error).__name__}: {error}".removesuffix(": ")) from error


def _glob(pattern: str) -> list[Path]:
    """The paths a glob matches, ``**`` included, never through a symlinked folder (which may
    lead back up: ``photos/loop -> ..``); ``glob.glob`` follows them."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if _MAGIC.search(part)), len(parts))
    if fixed == len(parts):
        return [Path(pattern)] if Path(pattern).exists() else []
    return sorted(Path(*parts[:fixed]).glob(str(Path(*parts[fixed:]))))


def find_images(inputs: str) -> list[Path]:
    """An image file, every image in a folder (recursively), or the images a glob matches;
    symlinked folders are not followed (a link back up would repeat the images forever)."""
    path = Path(inputs)
    if path.is_file():
        return [path]
    # pathlib's recursive walk does not enter symlinked folders
    candidates = sorted(path.rglob("*")) if path.is_dir() else _glob(inputs)
    images = [p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise UserError(
            f"inputs={inputs}: no image files found; give an image file, a folder or a glob "
            f"(e.g. 'photos/*.jpg') of {', '.join(IMAGE_SUFFIXES)} files"
        )
    return images


def image_files(folder: str | Path) -> Iterator[str]:
    """Paths of the files under ``folder`` (sub-folders too; symlinked ones not followed) with an
    image extension, in the order of their path components.

    Plain strings: a ``Path`` each would cost more than listing and stat-ing the file. Each folder
    is sorted by name and a sub-folder read where its name falls, which orders the paths as
    sorting ``Path`` objects does (not as sorting strings: ``x/0.png`` before ``x-1.png``); the
    order fixes the validation split.
    """
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=attrgetter("name"))
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from image_files(entry.path)
        elif entry.name.lower().endswith(IMG_EXTENSIONS):
            yield entry.path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cnnzoo``, or ``~/.cache/cnnzoo``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnzoo"


def _header_readable(path: str) -> bool:
    try:
        with _open_header(path):
            return True
    except UNREADABLE:
        return False


class HeaderCache:
    """Header checks of the image files under one absolute ``root``, remembered across runs in
    ``cache_dir()/headers-<hash of root>.json`` as ``{relative path: [mtime_ns, size, ok]}``.

    ``readable(files)`` keeps the files whose header PIL can read and collects the others in
    ``bad``; ``save()`` writes the cache back if anything changed. A cache that cannot be read is
    rebuilt, one that cannot be written is skipped: neither ever stops a run.
    """

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ValueError(f"HeaderCache needs an absolute root, got {root}")
        self.root = str(root)
        digest = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        self.file = cache_dir() / f"headers-{digest}.json"
        self.bad: list[str] = []
        self.cached = self._read()
        # this scan's entries: saving only these drops the files deleted since
        self.seen: dict[str, list] = {}
        self.checked = 0  # headers opened, i.e. cache misses

    def _read(self) -> dict[str, list]:
        try:
            cache = json.loads(self.file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.debug("Ignoring the unreadable header cache %s (%s)", self.file, error)
            return {}
        if (
            not isinstance(cache, dict)
            or cache.get("version") != CACHE_VERSION
            or cache.get("root") != self.root
            or not isinstance(cache.get("files"), dict)
        ):
            log.debug("Ignoring the header cache %s: not one of root %s", self.file, self.root)
            return {}
        return cache["files"]

    def _ok(self, path: str) -> bool:
        try:
            stat = os.stat(path)
        except OSError:
            return False  # a broken link, say: nothing to cache
        # the files come from image_files(root / …): their paths start with root + "/"
        key = path[len(self.root) + 1 :]
        stamp = [stat.st_mtime_ns, stat.st_size]
        entry = self.cached.get(key)
        if entry not in (stamp + [True], stamp + [False]):
            entry = stamp + [_header_readable(path)]
            self.checked += 1
        self.seen[key] = entry
        return bool(entry[2])

    def readable(self, files: Iterable[str]) -> list[str]:
        kept: list[str] = []
        with _no_bomb_warnings():
            for path in files:
                (kept if self._ok(path) else self.bad).append(path)
        return kept

    def save(self) -> None:
        if self.checked == 0 and len(self.seen) == len(self.cached):
            return
        cache = {"version": CACHE_VERSION, "root": self.root, "files": self.seen}
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            # written aside and renamed over: a reader (another DDP rank) never sees half a file
            fd, temp = tempfile.mkstemp(dir=self.file.parent, prefix=self.file.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(cache, f, separators=(",", ":"))
                os.replace(temp, self.file)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
        except OSError as error:
            log.debug("Not caching the header checks of %s in %s (%s)", self.root, self.file, error)


def decode_error(path: str) -> str | None:
    """Why ``path`` cannot be decoded in full (or is over PIL's pixel limit), or None if it can."""
    try:
        with _no_bomb_warnings(), _open_header(path) as image:
            image.load()
    # anything at all: one strange file must not stop the check of a million others
    except Exception as error:
        return str(error) or type(error).__name__
    return None


def decode_errors(files: list[str], *, workers: int = 1) -> Iterator[tuple[str, str]]:
    """``(path, error)`` of each file that does not decode, in ``files`` order; decoded in
    ``workers`` processes (1: in this one)."""
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        errors = pool.map(decode_error, files, chunksize=64) if pool else map(decode_error, files)
        for path, error in zip(files, errors, strict=True):
            if error is not None:
                yield path, error
