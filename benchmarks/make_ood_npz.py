"""Write the out-of-distribution search sources of ``benchmarks/suites/cifar10_ood.yaml`` as the product's
``npz`` datasets (x_train, y_train, x_test, y_test) from ../shared/data, whose MNIST keeps train and test in
two files. The product itself reads torchvision's MNIST/FashionMNIST; this is for offline measurements.

  python benchmarks/make_ood_npz.py ../shared/data /tmp/naspoison_ood
"""
import sys
from pathlib import Path

import numpy as np


def main(src: str, out: str) -> None:
    src_dir, out_dir = Path(src), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tr, te = np.load(src_dir / "mnist_train_subset.npz"), np.load(src_dir / "mnist_test.npz")
    np.savez(out_dir / "mnist.npz", x_train=tr["x_train"], y_train=tr["y_train"], x_test=te["x_test"], y_test=te["y_test"])
    tr, te = np.load(src_dir / "fashion_mnist_train.npz"), np.load(src_dir / "fashion_mnist_test.npz")
    np.savez(out_dir / "fashion_mnist.npz", x_train=tr["x_train"], y_train=tr["y_train"], x_test=te["x_test"],
             y_test=te["y_test"])
    print(f"wrote {out_dir / 'mnist.npz'}, {out_dir / 'fashion_mnist.npz'}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
