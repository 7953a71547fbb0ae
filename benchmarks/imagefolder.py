"""Setup time of `data=imagefolder` on a big folder: `python -m benchmarks --sections imagefolder`.

Writes ``files`` tiny PNGs (one encoded 8x8 image's bytes for all, 10 classes) into a temporary
folder and times the setup of a fresh datamodule three ways: the first (every header opened, the
cache written), the second (the cache read, one ``stat`` a file) and ``check_images=none`` (the
listing alone). The header cache goes to the same temporary folder, which is removed afterwards.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from cnnzoo.data import ImageFolderDataModule

__all__ = ["SETUPS", "measure_imagefolder_setup", "write_tiny_folder"]

# label -> datamodule arguments, in the order they run (the second reads the first's cache)
SETUPS = {
    "first setup: headers read, cache written": {},
    "second setup: cache read, one stat a file": {},
    "`check_images=none`: listing only": {"check_images": "none"},
}


def write_tiny_folder(root: Path, files: int, *, classes: int = 10) -> None:
    """``root/c<k>/<i>.png``: the same 8x8 PNG bytes ``files`` times (writing, not encoding)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, format="PNG")
    png = buffer.getvalue()
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True)
    for i in range(files):
        with open(root / f"c{i % classes}" / f"{i}.png", "wb") as f:
            f.write(png)


def measure_imagefolder_setup(files: int = 100_000) -> dict[str, float]:
    """Seconds of each setup in ``SETUPS`` on a folder of ``files`` tiny PNGs."""
    seconds = {}
    cache_home = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="cnnzoo-bench-") as temp:
        start = time.perf_counter()
        write_tiny_folder(Path(temp) / "images", files)
        seconds["writing the files (not setup)"] = time.perf_counter() - start
        os.environ["XDG_CACHE_HOME"] = str(Path(temp) / "cache")
        try:
            for label, kwargs in SETUPS.items():
                datamodule = ImageFolderDataModule(path=str(Path(temp) / "images"), **kwargs)
                start = time.perf_counter()
                datamodule.setup("fit")
                seconds[label] = time.perf_counter() - start
                assert len(datamodule.train_set) + len(datamodule.val_set) == files
        finally:
            if cache_home is None:
                del os.environ["XDG_CACHE_HOME"]
            else:
                os.environ["XDG_CACHE_HOME"] = cache_home
    return seconds
