"""Convert ../shared/data/mnist_5k.csv.gz (5,000 MNIST digits; 784 pixels then the label per row)
into the compact archive bundled with the package: src/cnnzoo/data/mnist_5k.npz.

    python scripts/make_mnist_sample.py [path/to/mnist_5k.csv.gz]
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "mnist_5k.csv.gz"
TARGET = ROOT / "src" / "cnnzoo" / "data" / "mnist_5k.npz"


def main(source: Path = SOURCE) -> None:
    with gzip.open(source, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    if rows.shape != (5000, 785):
        raise ValueError(f"expected 5000 rows of 785 integers in {source}, got {rows.shape}")
    images = rows[:, :784].reshape(-1, 28, 28)
    labels = rows[:, 784]
    np.savez_compressed(TARGET, images=images, labels=labels)
    print(f"wrote {TARGET} ({TARGET.stat().st_size:,} bytes): {len(labels)} images")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE)
