import gzip
import struct

import numpy as np
import pytest

from atrous.data import ArrayDataset, DataLoader, cifar10, digits, mnist
from atrous.data.transforms import ToFloat

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----- file writers, straight from the format descriptions -------------------------------------
def idx_bytes(array, magic):
    """IDX: big-endian uint32 magic, one big-endian uint32 per dimension, then the bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write(path, payload, gz=False):
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_mnist(root, split="train", n=7, rows=5, cols=4, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if gz else ""
    write(root / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images, 2051), gz)
    write(root / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels, 2049), gz)
    return images, labels


def cifar_bytes(images, labels):
    """CIFAR-10 binary: per image, 1 label byte then 1024 R, 1024 G, 1024 B bytes (row-major)."""
    out = bytearray()
    for img, lab in zip(images, labels):
        out.append(int(lab))
        for c in range(3):
            for r in range(32):
                for q in range(32):
                    out.append(int(img[c, r, q]))
    return bytes(out)


def write_cifar(folder, names, n_per_file=3, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    all_images, all_labels = [], []
    for name in names:
        images = rng.integers(0, 256, size=(n_per_file, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_file)
        (folder / name).write_bytes(cifar_bytes(images, labels))
        all_images.append(images)
        all_labels.append(labels)
    return np.concatenate(all_images), np.concatenate(all_labels)


TRAIN_FILES = [f"data_batch_{k}.bin" for k in range(1, 6)]


# ----- MNIST ---------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_reads_back_what_was_written(tmp_path, gz, split):
    images, labels = write_mnist(tmp_path, split, gz=gz, seed=1 if split == "test" else 0)
    ds = mnist(tmp_path, split)
    assert isinstance(ds, ArrayDataset)
    assert ds.images.shape == (7, 1, 5, 4) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.images[:, 0], images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert len(ds.classes) == 10 and ds.classes[3] == "3 - three"


def test_mnist_in_torchvision_layout_and_loader(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = write_mnist(raw, n=10, gz=True)
    loader = DataLoader(mnist(tmp_path), batch_size=4, transform=ToFloat())
    x, y = next(iter(loader))
    assert x.dtype == np.float32 and x.shape == (4, 1, 5, 4)
    np.testing.assert_allclose(x[:, 0], images[:4] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels[:4])


def test_mnist_missing_files_name_the_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*train-images-idx3-ubyte\.gz"):
        mnist(tmp_path)
    write_mnist(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        mnist(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        mnist(tmp_path, "val")


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_truncated_file(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    images = np.zeros((7, 5, 4), np.uint8)
    payload = idx_bytes(images, 2051)[:-3]
    path = write(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else "")), payload, gz)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated.*needs 156 bytes, found 153"):
        mnist(tmp_path)
    # a gzip stream cut short is reported as such
    if gz:
        path.write_bytes(gzip.compress(idx_bytes(images, 2051))[:-10])
        with pytest.raises(ValueError, match="corrupt or truncated gzip"):
            mnist(tmp_path)


def test_mnist_header_cut_short(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(struct.pack(">I", 2049) + b"\x00\x00")
    with pytest.raises(ValueError, match=r"idx1-ubyte is truncated: 6 bytes, the header alone needs 8"):
        mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short for an IDX header"):
        mnist(tmp_path)


def test_mnist_extra_bytes(tmp_path):
    write_mnist(tmp_path)
    labels = idx_bytes(np.zeros(7, np.uint8), 2049) + b"\x00"
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels)
    with pytest.raises(ValueError, match=r"longer than its header says.*needs 15 bytes, found 16"):
        mnist(tmp_path)


def test_mnist_wrong_magic(tmp_path):
    write_mnist(tmp_path)
    # the labels file where the images file should be
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8), 2049))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte has magic number 2049, expected 2051"):
        mnist(tmp_path)


def test_mnist_count_mismatch_and_bad_labels(tmp_path):
    write_mnist(tmp_path, n=7)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(6, np.uint8), 2049))
    with pytest.raises(ValueError, match=r"holds 7 images but .*train-labels-idx1-ubyte holds 6 labels"):
        mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(7, 12, np.uint8), 2049))
    with pytest.raises(ValueError, match="has label 12, expected labels 0..9"):
        mnist(tmp_path)


# ----- CIFAR-10 ------------------------------------------------------------------------------
@pytest.mark.parametrize("subfolder", [True, False])
def test_cifar10_reads_back_what_was_written(tmp_path, subfolder):
    folder = tmp_path / "cifar-10-batches-bin" if subfolder else tmp_path
    images, labels = write_cifar(folder, TRAIN_FILES, n_per_file=2)
    test_images, test_labels = write_cifar(folder, ["test_batch.bin"], n_per_file=3, seed=5)
    train = cifar10(tmp_path, "train")
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == np.uint8
    assert train.images.flags.c_contiguous and train.labels.dtype == np.int64
    np.testing.assert_array_equal(train.images, images)  # files in order 1..5
    np.testing.assert_array_equal(train.labels, labels)
    test = cifar10(tmp_path, "test")
    np.testing.assert_array_equal(test.images, test_images)
    np.testing.assert_array_equal(test.labels, test_labels)
    assert train.classes == CIFAR_NAMES


def test_cifar10_classes_from_meta(tmp_path):
    write_cifar(tmp_path, ["test_batch.bin"], n_per_file=1)
    names = [f"class{k}" for k in range(10)]
    (tmp_path / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    assert cifar10(tmp_path, "test").classes == names
    (tmp_path / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="lists 2 class names, expected 10"):
        cifar10(tmp_path, "test")


def test_cifar10_bad_size_and_labels(tmp_path):
    write_cifar(tmp_path, ["test_batch.bin"], n_per_file=2)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"test_batch\.bin has 6145 bytes.*multiple of 3073"):
        cifar10(tmp_path, "test")
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="has 0 bytes"):
        cifar10(tmp_path, "test")
    record = bytearray(3073)
    record[0] = 57
    path.write_bytes(bytes(3073) + bytes(record))
    with pytest.raises(ValueError, match="record 1 has label 57, expected 0..9"):
        cifar10(tmp_path, "test")


def test_cifar10_missing_files_name_the_paths(tmp_path):
    write_cifar(tmp_path, TRAIN_FILES[:3], n_per_file=1)
    with pytest.raises(FileNotFoundError, match=r"data_batch_4\.bin.*data_batch_5\.bin"):
        cifar10(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-bin.*test_batch\.bin"):
        cifar10(tmp_path, "test")


# ----- the scikit-learn digits -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sklearn_digits():
    datasets = pytest.importorskip(
        "sklearn.datasets", reason="digits() needs scikit-learn (pip install -e '.[data]')"
    )
    return datasets.load_digits()


def test_digits_split_is_a_fixed_disjoint_partition(sklearn_digits):
    train, test = digits("train"), digits("test")
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == np.float32
    assert train.labels.dtype == np.int64 and train.classes == [str(d) for d in range(10)]
    assert len(train) + len(test) == 1797 == len(sklearn_digits.target)
    assert abs(len(test) - 0.2 * 1797) <= 10  # stratified rounding moves at most one per class
    # .indices are positions in load_digits(); together they cover every sample exactly once
    assert not set(train.indices.tolist()) & set(test.indices.tolist())
    assert sorted(train.indices.tolist() + test.indices.tolist()) == list(range(1797))
    for ds in (train, test):
        np.testing.assert_allclose(ds.images[:, 0], sklearn_digits.images[ds.indices] / 16.0, rtol=1e-7)
        np.testing.assert_array_equal(ds.labels, sklearn_digits.target[ds.indices])


def test_digits_per_class_proportions_and_range(sklearn_digits):
    train, test = digits("train", test_fraction=0.25), digits("test", test_fraction=0.25)
    for c in range(10):
        total = int((sklearn_digits.target == c).sum())
        assert int((test.labels == c).sum()) == round(0.25 * total)
        assert int((train.labels == c).sum()) == total - round(0.25 * total)
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    np.testing.assert_array_equal(np.unique(train.images * 16), np.arange(17))


def test_digits_deterministic_and_seeded(sklearn_digits):
    a, b = digits("test"), digits("test")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    other = digits("test", seed=1)
    assert not np.array_equal(a.images, other.images)
    a.images[0] = 5.0  # returned arrays are the caller's own
    assert digits("test").images.max() == 1.0
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        digits("validation")
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        digits(test_fraction=1.0)
