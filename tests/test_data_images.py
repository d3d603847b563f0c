"""Image data: the embedded MNIST sample; IDX, CIFAR-10 and image-folder loaders on files written here."""

import gzip
import hashlib
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelwave.data.images import load_images
from pixelwave.errors import UserError

# ------------------------------------------------------------------------------------------------------------
# embedded sample


@pytest.fixture(scope="module")
def sample():
    return {s: load_images("mnist-sample", s) for s in ("train", "test")}


def test_sample_shapes_levels_and_split_sizes(sample):
    train, test = sample["train"], sample["test"]
    assert train.x.shape == (4500, 1, 28, 28) and test.x.shape == (500, 1, 28, 28)
    assert train.x.dtype == torch.uint8 and train.y.dtype == torch.int64
    assert train.levels == 256 and train.num_classes == 10
    assert train.class_names == [str(d) for d in range(10)]
    assert train.dims == 784 and train.size == (28, 28) and train.channels == 1
    assert int(train.x.max()) == 255 and int(train.x.min()) == 0
    # 50 of each digit held out, 450 of each trained on
    assert test.y.bincount(minlength=10).tolist() == [50] * 10
    assert train.y.bincount(minlength=10).tolist() == [450] * 10
    assert train.info()["name"] == "mnist-sample"


def test_sample_splits_are_disjoint(sample):
    def digests(d):
        return {hashlib.sha256(img.numpy().tobytes()).hexdigest() for img in d.x}

    train, test = digests(sample["train"]), digests(sample["test"])
    assert len(train) == 4500 and len(test) == 500  # all images distinct within each split
    assert not train & test


def test_sample_split_is_pinned(sample):
    # The held-out set must never change; these fingerprints catch any edit to the asset or the split rule.
    def sha(t):
        return hashlib.sha256(t.numpy().tobytes()).hexdigest()

    assert sha(sample["test"].x) == "d0c3b56aa468f2b17878bca7ee277d54aef7296be0dd48be1a32bac1b5214195"
    assert sha(sample["train"].x) == "dfe7f487f9f9ec81d71a8db5a7f2d6dc00c655dc05c8f7cdc13bed1e9f4602db"
    assert sample["test"].y.tolist() == np.repeat(np.arange(10), 50).tolist()


def test_sample_test_rows_are_every_tenth(sample):
    from pixelwave.data.images import ASSETS

    with np.load(ASSETS / "mnist_5k.npz", allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    assert np.array_equal(sample["test"].x[:, 0].numpy(), images[9::10])
    assert np.array_equal(sample["test"].y.numpy(), labels[9::10])
    keep = np.arange(5000) % 10 != 9
    assert np.array_equal(sample["train"].x[:, 0].numpy(), images[keep])


def test_binary_sample_thresholds_at_128(sample):
    for split in ("train", "test"):
        binary = load_images("mnist-sample-binary", split)
        assert binary.levels == 2 and binary.x.dtype == torch.uint8
        assert torch.equal(binary.x, (sample[split].x >= 128).to(torch.uint8))
        assert torch.equal(binary.y, sample[split].y)
        # levels=2 on the 256-level set is the same threshold: x * 2 // 256 == (x >= 128)
        assert torch.equal(load_images("mnist-sample", split, levels=2).x, binary.x)
    assert set(binary.x.unique().tolist()) == {0, 1}


def test_requantise_levels(sample):
    d = load_images("mnist-sample", "test", levels=16)
    assert d.levels == 16
    assert torch.equal(d.x, (sample["test"].x.int() * 16 // 256).to(torch.uint8))
    assert int(d.x.max()) == 15
    with pytest.raises(UserError, match="cannot be requantised"):
        load_images("mnist-sample-binary", levels=4)
    for bad in (1, 257, 0, 2.5, True):
        with pytest.raises(UserError, match="levels"):
            load_images("mnist-sample", levels=bad)


def test_names_and_options_are_checked():
    with pytest.raises(UserError, match="known: mnist-sample, mnist-sample-binary, mnist:DIR"):
        load_images("fashion")
    with pytest.raises(UserError, match="known"):
        load_images("svhn:/tmp")
    with pytest.raises(UserError, match="split must be"):
        load_images("mnist-sample", split="valid")
    with pytest.raises(UserError, match="names no folder"):
        load_images("mnist:")
    with pytest.raises(UserError, match="does not exist"):
        load_images("cifar10:/nonexistent/pixelwave-folder")
    with pytest.raises(UserError, match="28x28, not 32x32"):
        load_images("mnist-sample", size=(32, 32))
    with pytest.raises(UserError, match="1 channel"):
        load_images("mnist-sample", channels=3)
    with pytest.raises(UserError, match="resize=True only applies"):
        load_images("mnist-sample", size=(28, 28), resize=True)
    with pytest.raises(UserError, match="channels must be 1 or 3"):
        load_images("mnist-sample", channels=2)
    with pytest.raises(UserError, match="size must be"):
        load_images("mnist-sample", size=28)
    assert len(load_images("mnist-sample", "test", size=(28, 28), channels=1)) == 500


# ------------------------------------------------------------------------------------------------------------
# MNIST IDX


def _idx_bytes(a: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def _write_idx(folder: Path, rng, n_train=7, n_test=3, gz=False, sep="-"):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        arrays[prefix] = (x, y)
        for stem, a in ((f"images{sep}idx3-ubyte", x), (f"labels{sep}idx1-ubyte", y)):
            path = folder / f"{prefix}-{stem}{'.gz' if gz else ''}"
            path.write_bytes(gzip.compress(_idx_bytes(a)) if gz else _idx_bytes(a))
    return arrays


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sep", ["-", "."])
def test_idx_loads_back_exactly(tmp_path, gz, sep):
    arrays = _write_idx(tmp_path, np.random.default_rng(1), gz=gz, sep=sep)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        d = load_images(f"mnist:{tmp_path}", split)
        x, y = arrays[prefix]
        assert d.x.shape == (len(x), 1, 28, 28) and d.x.dtype == torch.uint8
        assert np.array_equal(d.x[:, 0].numpy(), x)
        assert np.array_equal(d.y.numpy(), y.astype(np.int64))
        assert d.levels == 256 and d.num_classes == 10 and d.name == f"mnist:{tmp_path}"
    four = load_images(f"mnist:{tmp_path}", levels=4)
    assert np.array_equal(four.x[:, 0].numpy(), arrays["train"][0].astype(np.int32) * 4 // 256)


def test_idx_torchvision_layout(tmp_path):
    arrays = _write_idx(tmp_path / "MNIST" / "raw", np.random.default_rng(2))
    d = load_images(f"mnist:{tmp_path}", "test")
    assert np.array_equal(d.x[:, 0].numpy(), arrays["t10k"][0])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_is_refused(tmp_path, gz):
    _write_idx(tmp_path, np.random.default_rng(3), gz=gz)
    path = tmp_path / f"train-images-idx3-ubyte{'.gz' if gz else ''}"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(UserError, match="train-images-idx3-ubyte") as e:
        load_images(f"mnist:{tmp_path}")
    assert "\n" not in str(e.value)
    if not gz:
        assert "truncated" in str(e.value)


def test_idx_extra_bytes_wrong_magic_and_mismatch_are_refused(tmp_path):
    rng = np.random.default_rng(4)
    _write_idx(tmp_path, rng)
    images = tmp_path / "train-images-idx3-ubyte"
    good = images.read_bytes()

    images.write_bytes(good + b"\0")
    with pytest.raises(UserError, match="longer than its header"):
        load_images(f"mnist:{tmp_path}")

    images.write_bytes(struct.pack(">I", 0x00000801) + good[4:])  # a labels magic on an images file
    with pytest.raises(UserError, match="train-images-idx3-ubyte.*magic 00000801, expected 00000803"):
        load_images(f"mnist:{tmp_path}")

    images.write_bytes(b"\x1f\x8b" + good[2:])  # looks like gzip but is not named .gz
    with pytest.raises(UserError, match="magic"):
        load_images(f"mnist:{tmp_path}")

    images.write_bytes(good)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(_idx_bytes(np.zeros(6, dtype=np.uint8)))  # 6 labels for 7 images
    with pytest.raises(UserError, match="6 labels for 7 images"):
        load_images(f"mnist:{tmp_path}")
    labels.write_bytes(_idx_bytes(np.full(7, 10, dtype=np.uint8)))
    with pytest.raises(UserError, match="label 10 is outside 0-9"):
        load_images(f"mnist:{tmp_path}")

    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="no t10k-labels-idx1-ubyte"):
        load_images(f"mnist:{tmp_path}", "test")

    (tmp_path / "bad.gz").mkdir()
    gz_dir = tmp_path / "gz"
    _write_idx(gz_dir, rng, gz=True)
    (gz_dir / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="train-labels-idx1-ubyte.gz: cannot read"):
        load_images(f"mnist:{gz_dir}")


# ------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches


def _cifar_batch(rng, n, protocol):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).tolist()  # the real batches hold a list of ints
    batch = {b"batch_label": b"training batch", b"labels": labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    return batch, pickle.dumps(batch, protocol=protocol)


def _write_cifar(folder: Path, rng, protocol=2, meta=True):
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name, n in [(f"data_batch_{i}", 2 + i) for i in range(1, 6)] + [("test_batch", 4)]:
        batches[name], raw = _cifar_batch(rng, n, protocol)
        (folder / name).write_bytes(raw)
    if meta:
        names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
        (folder / "batches.meta").write_bytes(
            pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=protocol))
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_loads_back_exactly(tmp_path, protocol):
    batches = _write_cifar(tmp_path, np.random.default_rng(5), protocol)
    train = load_images(f"cifar10:{tmp_path}", "train")
    data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert train.x.shape == (len(data), 3, 32, 32) and train.x.dtype == torch.uint8
    assert train.levels == 256 and train.num_classes == 10 and train.class_names[:2] == ["plane", "car"]
    assert train.y.tolist() == labels
    # each row is the red plane, then green, then blue, each 32x32 row-major
    for c in range(3):
        assert np.array_equal(train.x[:, c].numpy(), data[:, c * 1024:(c + 1) * 1024].reshape(-1, 32, 32))
    test = load_images(f"cifar10:{tmp_path}", "test")
    assert np.array_equal(test.x.numpy().reshape(len(test), -1), batches["test_batch"][b"data"])


def test_cifar_subfolder_and_default_class_names(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(6), meta=False)
    d = load_images(f"cifar10:{tmp_path}", "test")
    assert len(d) == 4 and d.class_names[0] == "airplane" and d.class_names[-1] == "truck"
    with pytest.raises(UserError, match="images have 3 channel"):
        load_images(f"cifar10:{tmp_path}", channels=1)


def _py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch byte-for-byte in the style of the real files: Python 2 str, numpy 1.x names, protocol 2."""
    def s(b):  # SHORT_BINSTRING: a Python 2 str
        return b"U" + bytes([len(b)]) + b

    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
             + b"(K\x01J" + struct.pack("<i", len(data)) + b"M\x00\x0c\x86"  # version 1, shape (N, 3072)
             + b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # dtype state
             + b"\x89T" + struct.pack("<I", data.nbytes) + data.tobytes() + b"tb")  # not fortran, raw bytes
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + array + s(b"labels") + label_list + b"u."


def test_cifar_python2_numpy1_batch(tmp_path):
    rng = np.random.default_rng(22)
    _write_cifar(tmp_path, rng, meta=False)
    data = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    (tmp_path / "test_batch").write_bytes(_py2_batch(data, [1, 2, 9]))
    meta = b"\x80\x02}(U\x0blabel_names](" + b"".join(b"U\x01" + bytes([c]) for c in b"abcdefghij") + b"eu."
    (tmp_path / "batches.meta").write_bytes(meta)
    d = load_images(f"cifar10:{tmp_path}", "test")
    assert np.array_equal(d.x.numpy().reshape(3, -1), data) and d.y.tolist() == [1, 2, 9]
    assert d.class_names == list("abcdefghij")


class _SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _OpenPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_planted_payload_would_run_under_plain_pickle(tmp_path):
    # Control: the payload is live, so the refusal tests below can fail if the reader ever used pickle.load.
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_OpenPayload(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("payload", [_SystemPayload, _OpenPayload])
@pytest.mark.parametrize("where", ["top", "inside"])
@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_pickle_payload_is_refused(tmp_path, payload, where, protocol):
    _write_cifar(tmp_path, np.random.default_rng(7), protocol)
    marker = tmp_path / "pwned"
    batch, _ = _cifar_batch(np.random.default_rng(8), 3, protocol)
    if where == "top":
        evil = payload(marker)
    else:
        batch[b"filenames"] = [payload(marker)]
        evil = batch
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(UserError, match=r"data_batch_2: refused to unpickle (posix|os|nt|builtins|io)\."):
        load_images(f"cifar10:{tmp_path}")
    assert not marker.exists()


def test_cifar_bad_batches_are_refused(tmp_path):
    rng = np.random.default_rng(9)
    _write_cifar(tmp_path, rng)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(UserError, match="missing .*data_batch_3"):
        load_images(f"cifar10:{tmp_path}")

    (tmp_path / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UserError, match="data_batch_3: not a readable CIFAR-10 batch"):
        load_images(f"cifar10:{tmp_path}")

    bad = {b"data": np.zeros((2, 3072), dtype=np.float32), b"labels": [0, 1]}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(UserError, match="data_batch_3: 'data' must be a uint8 array"):
        load_images(f"cifar10:{tmp_path}")

    bad = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 10]}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(UserError, match="label 10 is outside 0-9"):
        load_images(f"cifar10:{tmp_path}")

    bad = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"fine_labels": [0, 1]}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(UserError, match="no 'labels'"):
        load_images(f"cifar10:{tmp_path}")


# ------------------------------------------------------------------------------------------------------------
# image folders


def _write_folder(root: Path, rng, classes, per_class, size=(5, 6), mode="L"):
    """Random PNGs in class subfolders (or directly in root when classes is None); returns {path: array}."""
    written = {}
    for c in classes or [None]:
        folder = root / c if c else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = size if mode == "L" else (*size, 3)
            a = rng.integers(0, 256, size=shape, dtype=np.uint8)
            path = folder / f"img{i:02d}.png"
            Image.fromarray(a, mode).save(path)
            written[path] = a
    return written


def test_gray_folder_with_classes_loads_exactly(tmp_path):
    written = _write_folder(tmp_path, np.random.default_rng(10), ["zebra", "apple", "mango"], 4)
    (tmp_path / "apple" / "notes.txt").write_text("not an image")  # other files are not images: ignored
    train = load_images(f"images:{tmp_path}", "train")
    test = load_images(f"images:{tmp_path}", "test")
    assert train.class_names == ["apple", "mango", "zebra"] and train.num_classes == 3
    # 12 files in (class, name) order; every 10th is held out -> position 9 = zebra/img01.png
    assert len(train) == 11 and len(test) == 1 and train.x.shape == (11, 1, 5, 6)
    assert test.y.tolist() == [2]
    assert np.array_equal(test.x[0, 0].numpy(), written[tmp_path / "zebra" / "img01.png"])
    order = sorted(written, key=lambda p: (p.parent.name, p.name))
    del order[9]
    for i, path in enumerate(order):
        assert np.array_equal(train.x[i, 0].numpy(), written[path])
        assert train.class_names[int(train.y[i])] == path.parent.name


def test_rgb_folder_with_train_test_splits_loads_exactly(tmp_path):
    rng = np.random.default_rng(11)
    train_w = _write_folder(tmp_path / "train", rng, ["cat", "dog"], 3, size=(4, 7), mode="RGB")
    test_w = _write_folder(tmp_path / "test", rng, ["dog"], 2, size=(4, 7), mode="RGB")
    train = load_images(f"images:{tmp_path}", "train")
    test = load_images(f"images:{tmp_path}", "test")
    assert train.x.shape == (6, 3, 4, 7) and test.x.shape == (2, 3, 4, 7)
    assert train.y.tolist() == [0, 0, 0, 1, 1, 1] and test.y.tolist() == [1, 1]
    assert test.class_names == ["cat", "dog"]
    for d, written in ((train, train_w), (test, test_w)):
        for i, path in enumerate(sorted(written, key=lambda p: (p.parent.name, p.name))):
            assert np.array_equal(d.x[i].numpy(), written[path].transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)
    gray = load_images(f"images:{tmp_path}", "test", channels=1)
    expected = np.asarray(Image.fromarray(test_w[tmp_path / "test" / "dog" / "img00.png"]).convert("L"))
    assert gray.x.shape == (2, 1, 4, 7) and np.array_equal(gray.x[0, 0].numpy(), expected)

    (tmp_path / "test" / "bird").mkdir()
    Image.fromarray(np.zeros((4, 7, 3), np.uint8)).save(tmp_path / "test" / "bird" / "a.png")
    with pytest.raises(UserError, match="bird: class folder not present in the training folder"):
        load_images(f"images:{tmp_path}", "test")


def test_flat_folder_has_no_labels_and_holds_out_the_last_of_few(tmp_path):
    written = _write_folder(tmp_path, np.random.default_rng(12), None, 5)
    train, test = load_images(f"images:{tmp_path}"), load_images(f"images:{tmp_path}", "test")
    assert train.y is None and train.num_classes is None and train.class_names is None
    assert len(train) == 4 and len(test) == 1
    assert np.array_equal(test.x[0, 0].numpy(), written[tmp_path / "img04.png"])
    assert train.batch(torch.tensor([0, 1]))["y"] is None
    assert test.levels == 256 and load_images(f"images:{tmp_path}", "test", levels=2).levels == 2


def test_folder_split_of_many_is_every_tenth(tmp_path):
    _write_folder(tmp_path, np.random.default_rng(13), None, 25, size=(2, 2))
    assert len(load_images(f"images:{tmp_path}")) == 23
    assert len(load_images(f"images:{tmp_path}", "test")) == 2  # positions 9 and 19


def test_folder_size_mismatch_is_refused_unless_resize(tmp_path):
    _write_folder(tmp_path, np.random.default_rng(14), None, 3, size=(8, 8))
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "img01.png")  # one odd size
    with pytest.raises(UserError, match=r"img01.png: image is 9x8, expected 8x8 \(the size of img00.png\)"):
        load_images(f"images:{tmp_path}")
    with pytest.raises(UserError, match=r"img00.png: image is 8x8, expected 4x4; pass resize=True"):
        load_images(f"images:{tmp_path}", size=(4, 4))
    d = load_images(f"images:{tmp_path}", size=(4, 4), resize=True)
    assert d.x.shape == (2, 1, 4, 4)
    with pytest.raises(UserError, match="resize=True needs size"):
        load_images(f"images:{tmp_path}", resize=True)


def test_folder_mixed_modes_need_channels(tmp_path):
    _write_folder(tmp_path, np.random.default_rng(15), None, 2, size=(3, 3))
    Image.fromarray(np.full((3, 3, 3), 7, np.uint8)).save(tmp_path / "img05.png")  # the held-out one
    # the first training image (gray) sets the channel count, so the test split must match it too
    with pytest.raises(UserError, match=r"img05.png: mode RGB differs .*\(img00.png\); pass channels=1 or 3"):
        load_images(f"images:{tmp_path}", "test")
    d = load_images(f"images:{tmp_path}", "test", channels=3)
    assert d.x.shape == (1, 3, 3, 3) and d.x.unique().tolist() == [7]


def test_folder_jpeg_and_16bit(tmp_path):
    a = np.random.default_rng(16).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    for i in range(2):
        Image.fromarray(a).save(tmp_path / f"p{i}.jpg", quality=95)
    d = load_images(f"images:{tmp_path}")
    assert d.x.shape == (1, 3, 8, 8)
    decoded = np.asarray(Image.open(tmp_path / "p0.jpg").convert("RGB"))  # JPEG is lossy: compare to Pillow
    assert np.array_equal(d.x[0].numpy().transpose(1, 2, 0), decoded)
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / "p2.png")
    with pytest.raises(UserError, match="p2.png: I.* images \\(16-bit or float\\) are not supported"):
        load_images(f"images:{tmp_path}", "test", channels=3)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_folder_corrupt_file_is_named(tmp_path, damage):
    _write_folder(tmp_path, np.random.default_rng(17), ["a", "b"], 2, size=(16, 16))
    bad = tmp_path / "b" / "img00.png"
    data = bad.read_bytes()
    bad.write_bytes(b"this is not a png" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(UserError, match=r"b[/\\]img00.png: cannot read image") as e:
        load_images(f"images:{tmp_path}")
    assert "\n" not in str(e.value)


def test_folder_empty_and_malformed_layouts(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"empty: no images"):
        load_images(f"images:{empty}")

    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match=r"empty: no images"):
        load_images(f"images:{empty}")

    classes = tmp_path / "classes"
    _write_folder(classes, np.random.default_rng(18), ["a"], 2)
    (classes / "b").mkdir()
    with pytest.raises(UserError, match=r"classes[/\\]b: no images"):
        load_images(f"images:{classes}")

    mixed = tmp_path / "mixed"
    _write_folder(mixed, np.random.default_rng(19), ["a"], 2)
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(mixed / "loose.png")
    with pytest.raises(UserError, match="mixed: has both image files"):
        load_images(f"images:{mixed}")

    one = tmp_path / "one"
    _write_folder(one, np.random.default_rng(20), None, 1)
    with pytest.raises(UserError, match="one: only 1 image"):
        load_images(f"images:{one}")

    half = tmp_path / "half"
    _write_folder(half / "train", np.random.default_rng(21), None, 2)
    with pytest.raises(UserError, match="has a train/ folder but no test/"):
        load_images(f"images:{half}")
