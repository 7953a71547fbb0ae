"""Small synthetic datasets written in each real dataset's own on-disk format.

Every ``write_*`` function writes into ``root`` exactly the files that torchvision's dataset class
(or cnnzoo's image-folder reader) expects after a download, and returns the ``data_dir`` to pass
as ``paths.data_dir`` (or ``data.path`` for image folders). The images are learnable: class ``k``
is a bright horizontal band at its own height over dim noise, so short runs beat chance.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "CIFAR10_CLASSES",
    "class_images",
    "write_cifar10",
    "write_cifar100",
    "write_fashion_mnist",
    "write_imagefolder",
    "write_kmnist",
    "write_mnist",
    "write_png_bomb",
    "write_svhn",
]

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
]  # fmt: skip


def class_images(
    n: int, *, num_classes: int, channels: int, size: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images ``N x H x W x C`` whose class shows as a band's height; labels cycle."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    images = rng.integers(0, 60, size=(n, size, size, channels), dtype=np.uint8)
    band = max(1, size // min(num_classes, size // 2))
    for i, label in enumerate(labels):
        top = (label * band) % (size - band + 1)
        images[i, top : top + band, :, :] = 200 + rng.integers(0, 55)
    return images, labels


# --- MNIST family: IDX files under <root>/<DatasetName>/raw --------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    type_code = 0x08  # unsigned byte
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 60, n_test: int = 20, *, name: str = "MNIST") -> Path:
    """``<root>/<name>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (extracted IDX files)."""
    raw = Path(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = class_images(n, num_classes=10, channels=1, size=28, seed=seed)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[..., 0])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return Path(root)


def write_fashion_mnist(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    return write_mnist(root, n_train, n_test, name="FashionMNIST")


def write_kmnist(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    return write_mnist(root, n_train, n_test, name="KMNIST")


# --- CIFAR: pickled batches --------------------------------------------------------------------


def _pickle(path: Path, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def _cifar_rows(n: int, num_classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    images, labels = class_images(n, num_classes=num_classes, channels=3, size=32, seed=seed)
    # CIFAR stores each image as one row: 1024 red, then 1024 green, then 1024 blue values
    return images.transpose(0, 3, 1, 2).reshape(n, 3072), labels.tolist()


def write_cifar10(root: Path, n_train: int = 100, n_test: int = 20) -> Path:
    """``<root>/cifar-10-batches-py/``: ``data_batch_1..5``, ``test_batch``, ``batches.meta``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    data, labels = _cifar_rows(n_train, 10, seed=0)
    for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        entry = {"data": data[part], "labels": [labels[j] for j in part]}
        _pickle(folder / f"data_batch_{i}", entry)
    data, labels = _cifar_rows(n_test, 10, seed=1)
    _pickle(folder / "test_batch", {"data": data, "labels": labels})
    _pickle(folder / "batches.meta", {"label_names": CIFAR10_CLASSES})
    return Path(root)


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """``<root>/cifar-100-python/``: ``train``, ``test`` and ``meta`` (100 fine labels)."""
    from cnnzoo.data import CIFAR100DataModule

    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        data, labels = _cifar_rows(n, 100, seed=seed)
        _pickle(folder / name, {"data": data, "fine_labels": labels, "coarse_labels": labels})
    _pickle(folder / "meta", {"fine_label_names": list(CIFAR100DataModule.class_names)})
    return Path(root)


# --- SVHN: MATLAB files -------------------------------------------------------------------------


def write_svhn(root: Path, n_train: int = 100, n_test: int = 20, n_extra: int = 0) -> Path:
    """``<root>/{train,test[,extra]}_32x32.mat`` with ``X`` (32 x 32 x 3 x N) and ``y`` (1..10)."""
    from scipy.io import savemat

    Path(root).mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1), ("extra", n_extra, 2)):
        if n == 0:
            continue
        images, labels = class_images(n, num_classes=10, channels=3, size=32, seed=seed)
        # SVHN labels the digit 0 as class 10
        y = np.where(labels == 0, 10, labels).reshape(-1, 1).astype(np.uint8)
        savemat(Path(root) / f"{split}_32x32.mat", {"X": images.transpose(1, 2, 3, 0), "y": y})
    return Path(root)


# --- image folders ------------------------------------------------------------------------------


def write_imagefolder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "fox"),
    n_per_class: int = 8,
    *,
    splits: tuple[str, ...] = ("train", "val"),
    size: int = 40,
    suffix: str = ".png",
    mode: str = "RGB",
) -> Path:
    """``<root>/<split>/<class>/<i><suffix>`` (or ``<root>/<class>/…`` when ``splits=()``)."""
    from PIL import Image

    for s, split in enumerate(splits or ("",)):
        images, labels = class_images(
            n_per_class * len(classes), num_classes=len(classes), channels=3, size=size, seed=s
        )
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = Path(root) / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).convert(mode).save(folder / f"{i}{suffix}")
    return Path(root)


# --- hostile files -----------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_bomb(path: Path, side: int) -> Path:
    """A real decompression bomb: a valid 1-bit ``side`` x ``side`` PNG of zeros, whose pixel
    data compresses about 1000:1 (20,000 px a side: 400 M pixels in ~50 kB; decoded to grey or
    RGB, 0.4 or 1.2 GB)."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, grey
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )
    return path
