"""Labelled image datasets as plain uint8 arrays (SPEC §6 "Datasets").

Every loader returns an :class:`ImageData`; a new dataset is one function plus one registry line.
The product never reads ``../shared``: it uses torchvision, the user's own ``.npz``, or the
scikit-learn digits that ship with the install.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydantic import Field

from naspoison.params import StrictParams


class DatasetSpec(StrictParams):
    """Which data, where from, and how much of it (``train_size``/``test_size`` take a seeded subset)."""
    name: str
    root: str = "~/.cache/naspoison/datasets"
    download: bool = False
    path: str | None = Field(default=None, description="file for name=npz")
    train_size: int | None = Field(default=None, gt=0)
    test_size: int | None = Field(default=None, gt=0)
    subset_seed: int = 0
    resize: list[int] | None = Field(default=None, min_length=3, max_length=3,
                                     description="bring images to [H, W, C] (out-of-distribution search)")


@dataclass(frozen=True)
class ImageData:
    """x_*: uint8 [N, H, W, C]; y_*: int64 [N]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def _nhwc(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N,H,W] or [N,H,W,C], got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x)


def make_image_data(name, x_train, y_train, x_test, y_test, num_classes=None) -> ImageData:
    y_train = np.asarray(y_train, dtype=np.int64)
    y_test = np.asarray(y_test, dtype=np.int64)
    x_train, x_test = _nhwc(x_train), _nhwc(x_test)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"{name}: images and labels differ in length")
    k = int(num_classes or max(y_train.max(), y_test.max()) + 1)
    return ImageData(name, x_train, y_train, x_test, y_test, k)


def arrays_digest(*arrays: np.ndarray) -> str:
    """sha256 over each array's dtype, shape and bytes: equal arrays give equal digests whatever file held them."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def content_digest(data: ImageData) -> str:
    return arrays_digest(data.x_train, data.y_train.astype(np.int64), data.x_test, data.y_test.astype(np.int64))


# Built-in datasets are keyed by their canonical name (keys made before content keys existed stay valid). That
# is sound only because the name denotes fixed content: scikit-learn bundles digits.csv.gz and two photographs,
# and their split is seeded. These are the digests of what the loaders return; a scikit-learn (or image decoder)
# that gave other pixels or another split would silently mix results of different data under one key, so the
# loader refuses instead. CIFAR-10/100 and SVHN are md5-checked by torchvision on every load; MNIST and
# Fashion-MNIST are the fixed published releases (md5-checked by torchvision when downloaded).
BUILTIN_DIGESTS = {
    "digits": "dfed2dea8c4a245b3a9ba1e0a651788632d0022c7ea52e1f537a28b5a51ac189",
    "photo_patches": "114975b1267945b91af479853796b4ec334351f53feacade9017b28cc9128bc7",
}


def _check_builtin(data: ImageData, name: str) -> ImageData:
    expected = BUILTIN_DIGESTS.get(name)
    if expected and content_digest(data) != expected:
        raise RuntimeError(f"dataset {name!r} loaded here differs from the one its cells were keyed on (content "
                           f"sha256 {content_digest(data)[:16]}…, expected {expected[:16]}…): another scikit-learn "
                           "or image decoder? Results keyed by the name would mix two datasets; refusing")
    return data


def to_shape(data: ImageData, shape: tuple[int, int, int] | list[int]) -> ImageData:
    """Images brought to ``[H, W, C]``: bilinear resize (antialiased when shrinking), grey to colour by
    repeating the channel, colour to grey by ITU-R 601 luma; labels unchanged."""
    import torch
    import torch.nn.functional as F

    h, w, c = (int(v) for v in shape)
    if h <= 0 or w <= 0 or c not in (1, 3):
        raise ValueError(f"resize {list(shape)}: need positive H, W and 1 or 3 channels")

    def convert(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
        if t.shape[2:] != (h, w):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        if t.shape[1] == 1 and c == 3:
            t = t.expand(-1, 3, -1, -1)
        elif t.shape[1] == 3 and c == 1:
            t = (t * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return np.ascontiguousarray(t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())

    return replace(data, x_train=convert(data.x_train), x_test=convert(data.x_test))


# ----------------------------------------------------------------------------- loaders
def _digits(spec: DatasetSpec) -> ImageData:
    """scikit-learn's bundled 8x8 digits (grey 0..16 -> 0..255), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, stratify=d.target, random_state=0)
    return _check_builtin(make_image_data("digits", xtr, ytr, xte, yte, 10), "digits")


def _photo_patches(spec: DatasetSpec) -> ImageData:
    """32x32 patches (stride 16) of the two photographs bundled with scikit-learn (china.jpg, flower.jpg):
    class = photograph × one of five vertical bands, 10 classes, a seeded 80/20 split. Natural colour
    images that need no download: the demo's out-of-distribution search source, nothing more."""
    from sklearn.datasets import load_sample_images
    from sklearn.model_selection import train_test_split

    xs, ys = [], []
    for k, img in enumerate(load_sample_images().images):
        height, width, _ = img.shape
        for top in range(0, height - 32 + 1, 16):
            for left in range(0, width - 32 + 1, 16):
                xs.append(img[top:top + 32, left:left + 32])
                ys.append(5 * k + (left + 16) * 5 // width)
    xtr, xte, ytr, yte = train_test_split(np.stack(xs), np.array(ys), test_size=0.2, stratify=ys, random_state=0)
    return _check_builtin(make_image_data("photo_patches", xtr, ytr, xte, yte, 10), "photo_patches")


def _torchvision(cls_name: str, split_kw: Callable[[bool], dict]) -> Callable[[DatasetSpec], ImageData]:
    def load(spec: DatasetSpec) -> ImageData:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        root = Path(spec.root).expanduser()
        try:
            tr = cls(str(root), download=spec.download, **split_kw(True))
            te = cls(str(root), download=spec.download, **split_kw(False))
        except RuntimeError as e:  # torchvision says "Dataset not found or corrupted"
            raise FileNotFoundError(
                f"{cls_name} not found under {root}: set dataset.root to where it lives, or "
                f"dataset.download: true on a machine with internet ({e})") from None

        def arrays(ds):
            x = np.asarray(ds.data)
            if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):  # SVHN is NCHW
                x = x.transpose(0, 2, 3, 1)
            y = np.asarray(getattr(ds, "targets", None) if hasattr(ds, "targets") else ds.labels)
            return x.astype(np.uint8), y

        (xtr, ytr), (xte, yte) = arrays(tr), arrays(te)
        return make_image_data(spec.name, xtr, ytr, xte, yte, len(tr.classes) if hasattr(tr, "classes") else None)

    return load


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DatasetFileError(ValueError):
    """A user's dataset file that cannot be used as it is (one clear line: file and reason)."""


def _read_npz(path: Path) -> tuple[np.ndarray, ...]:
    """The four arrays of a user's .npz, checked up front so a bad file fails at validation, not in a cell."""
    import zipfile

    def bad(msg: str) -> DatasetFileError:
        return DatasetFileError(f"dataset file {path}: {msg}")

    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    if not zipfile.is_zipfile(path):  # np.load would take any other file for a pickle
        raise bad("not a readable .npz (not a zip archive of arrays, as numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = set(NPZ_KEYS) - set(z.files)
            if missing:
                raise bad(f"lacks {sorted(missing)} (has {sorted(z.files)}); needs x_train, y_train, x_test, y_test")
            arrays = tuple(z[k] for k in NPZ_KEYS)
    except DatasetFileError:
        raise
    except ValueError as e:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        if "allow_pickle" in str(e):
            raise bad("holds pickled Python objects; only plain arrays are read (never unpickled)") from None
        raise bad(f"not a readable .npz ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise bad(f"not a readable .npz ({type(e).__name__}: {e})") from None
    x_train, y_train, x_test, y_test = arrays
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)):
            raise bad(f"{name} must be uint8 [N,H,W] or [N,H,W,C] with C 1 or 3 (images 0..255), "
                      f"got {x.dtype} {list(x.shape)}")
    if x_train.shape[1:3] != x_test.shape[1:3] or x_train.ndim != x_test.ndim or x_train.shape[3:] != x_test.shape[3:]:
        raise bad(f"x_train {list(x_train.shape[1:])} and x_test {list(x_test.shape[1:])} images differ in shape")
    for name, y, x in (("y_train", y_train, x_train), ("y_test", y_test, x_test)):
        if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer)):
            # float labels would be truncated silently (2.7 -> 2): refuse them
            raise bad(f"{name} must be a 1-d array of integer class ids, got {y.dtype} {list(y.shape)}")
        if len(y) != len(x):
            raise bad(f"{name} has {len(y)} labels for {len(x)} images")
        if len(y) == 0:
            raise bad(f"{name} is empty")
        if y.min() < 0:
            raise bad(f"{name} holds a negative label ({int(y.min())})")
    classes = int(y_train.max()) + 1
    if len(np.unique(y_train)) < 2:
        raise bad(f"y_train has a single class ({int(y_train[0])}); classification needs at least two")
    if y_test.max() >= classes:
        raise bad(f"y_test holds label {int(y_test.max())}, beyond the training classes 0..{classes - 1}")
    return x_train, y_train, x_test, y_test


_NPZ_DIGESTS: dict[tuple, str] = {}


def npz_digest(path: str | os.PathLike) -> str:
    """Content digest of a user's .npz (its four arrays, validated), computed once per file version: memoised
    by (path, size, mtime), so a file replaced in place is hashed again and gets another key."""
    path = Path(path).expanduser().resolve()
    try:
        st = path.stat()
    except OSError:
        raise FileNotFoundError(f"dataset file {path} does not exist") from None
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _NPZ_DIGESTS:
        _NPZ_DIGESTS[memo] = arrays_digest(*_read_npz(path))
    return _NPZ_DIGESTS[memo]


def content_identity(dataset: dict) -> dict:
    """What identifies a dataset's content in keys beyond its name: a user's .npz by the digest of its arrays
    (where it lives is not content); built-ins by name alone (see BUILTIN_DIGESTS)."""
    if dataset["name"] == "npz":
        if not dataset.get("path"):
            raise ValueError("dataset 'npz' needs a path: to a .npz with x_train, y_train, x_test, y_test")
        return {"sha256": npz_digest(dataset["path"])}
    return {}


def resolve_path(path: str | None, base: Path) -> str | None:
    """A dataset path as written in a suite file: ``~`` expanded, relative to the suite file's folder."""
    if not path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _npz(spec: DatasetSpec) -> ImageData:
    if not spec.path:
        raise ValueError("dataset 'npz' needs a path: to a .npz with x_train, y_train, x_test, y_test")
    path = Path(spec.path).expanduser()
    return make_image_data(path.stem, *_read_npz(path))


class _ArraysOnly(__import__("pickle").Unpickler):
    """ImageNet16's files are Python pickles of {'data': uint8 array, 'labels': list}: allow numpy's array
    reconstruction and nothing else, so a crafted file cannot run code."""

    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                         ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                         ("numpy._core.multiarray", "scalar")})

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise ValueError(f"refusing to load {module}.{name} from an ImageNet16 file (only arrays are allowed)")


def _imagenet16_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        d = _ArraysOnly(f, encoding="latin1").load()
    x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 16, 16).transpose(0, 2, 3, 1)
    return x, np.asarray(d["labels"], dtype=np.int64)


def _imagenet16_120(spec: DatasetSpec) -> ImageData:
    """ImageNet16-120 from its NATS-Bench files under ``root``: ``train_data_batch_1``..``10`` and
    ``val_data`` (16x16 RGB, labels 1..1000); the 120 classes are labels 1..120 (as NATS-Bench does)."""
    root = Path(spec.path or spec.root).expanduser()
    names = [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"ImageNet16 files not found under {root} (missing {missing[:3]}...); set "
                                "dataset.root (or path) to the folder with train_data_batch_1..10 and val_data")
    parts = [_imagenet16_batch(root / n) for n in names]
    xtr, ytr = np.concatenate([p[0] for p in parts[:-1]]), np.concatenate([p[1] for p in parts[:-1]])
    xte, yte = parts[-1]
    keep_tr, keep_te = (ytr >= 1) & (ytr <= 120), (yte >= 1) & (yte <= 120)
    return make_image_data("imagenet16_120", xtr[keep_tr], ytr[keep_tr] - 1, xte[keep_te], yte[keep_te] - 1, 120)


DATASETS: dict[str, Callable[[DatasetSpec], ImageData]] = {
    "digits": _digits,
    "photo_patches": _photo_patches,
    "cifar10": _torchvision("CIFAR10", lambda train: {"train": train}),
    "cifar100": _torchvision("CIFAR100", lambda train: {"train": train}),
    "mnist": _torchvision("MNIST", lambda train: {"train": train}),
    "fashion_mnist": _torchvision("FashionMNIST", lambda train: {"train": train}),
    "svhn": _torchvision("SVHN", lambda train: {"split": "train" if train else "test"}),
    "npz": _npz,
    "imagenet16_120": _imagenet16_120,
}


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator):
    if n is None or n >= len(x):
        return x, y
    idx = np.sort(rng.permutation(len(x))[:n])
    return x[idx], y[idx]


_CACHE: dict[str, ImageData] = {}


def load_dataset(spec: DatasetSpec | dict) -> ImageData:
    """Load (memoised per process) and subset a dataset by its spec."""
    spec = spec if isinstance(spec, DatasetSpec) else DatasetSpec.model_validate(spec)
    # a user's file by its content too: the same path may hold other arrays later in a long-lived process
    memo = spec.model_dump_json() + (npz_digest(spec.path) if spec.name == "npz" and spec.path else "")
    if memo not in _CACHE:
        if spec.name not in DATASETS:
            raise KeyError(f"unknown dataset {spec.name!r}; known: {sorted(DATASETS)}")
        data = DATASETS[spec.name](spec)
        rng = np.random.default_rng(spec.subset_seed)
        xtr, ytr = _subset(data.x_train, data.y_train, spec.train_size, rng)
        xte, yte = _subset(data.x_test, data.y_test, spec.test_size, rng)
        data = replace(data, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
        _CACHE[memo] = to_shape(data, spec.resize) if spec.resize else data
    return _CACHE[memo]

