import json

import numpy as np
import pytest

import atrous
from atrous.data import ArrayDataset, DataLoader, Dataset, Subset, TensorDataset, random_split
from atrous.data.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip


def make_dataset(n=23, c=1, h=4, w=4):
    images = np.arange(n * c * h * w, dtype=np.float32).reshape(n, c, h, w)
    labels = np.arange(n, dtype=np.int64)  # label == sample index, so batches reveal the order
    return TensorDataset(images, labels)


class ItemDataset(Dataset):
    """A generic dataset with no arrays to index: only __getitem__ and __len__."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((1, 2, 2), i, dtype=np.float32), i


def labels_of(loader):
    return [y.tolist() for _, y in loader]


# ----- datasets ------------------------------------------------------------------------------
def test_tensor_dataset_items_and_tensors():
    x = np.arange(12.0).reshape(6, 2)
    y = atrous.Tensor(np.arange(6))
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    a, b = ds[4]
    np.testing.assert_array_equal(a, [8.0, 9.0])
    assert b == 4 and isinstance(b, np.integer)
    xb, yb = ds.get_batch([5, 0])
    np.testing.assert_array_equal(xb, x[[5, 0]])
    np.testing.assert_array_equal(yb, [5, 0])


def test_tensor_dataset_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"same first dimension.*\[5, 4\]"):
        TensorDataset(np.zeros((5, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()
    with pytest.raises(ValueError, match="0-D"):
        TensorDataset(np.float32(1.0))


def test_array_dataset_checks_shapes():
    ds = ArrayDataset(np.zeros((3, 1, 2, 2), np.float32), np.array([0, 1, 2], np.int32), classes="abc")
    assert ds.labels.dtype == np.int64 and ds.classes == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\)"):
        ArrayDataset(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="labels must be 1-D"):
        ArrayDataset(np.zeros((3, 1, 2, 2)), np.zeros((3, 1)))


def test_subset_and_random_split():
    ds = make_dataset(10)
    sub = Subset(ds, [7, 2, 5])
    assert len(sub) == 3 and sub[1][1] == 2
    np.testing.assert_array_equal(sub.get_batch([2, 0])[1], [5, 7])
    parts = random_split(ds, [6, 4], generator=0)
    seen = np.concatenate([p.indices for p in parts])
    assert [len(p) for p in parts] == [6, 4]
    assert sorted(seen.tolist()) == list(range(10))
    np.testing.assert_array_equal(parts[0].indices, random_split(ds, [6, 4], generator=0)[0].indices)
    assert [len(p) for p in random_split(ds, [0.5, 0.3, 0.2], generator=1)] == [5, 3, 2]
    assert [len(p) for p in random_split(make_dataset(11), [0.5, 0.5], generator=1)] == [6, 5]
    with pytest.raises(ValueError, match="sum to the dataset size 10"):
        random_split(ds, [6, 3])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        Subset(ds, [0, 10])


# ----- batching ------------------------------------------------------------------------------
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n,bs", [(23, 5), (20, 5), (3, 8), (1, 1)])
def test_batch_sizes_and_len(n, bs, drop_last):
    loader = DataLoader(make_dataset(n), batch_size=bs, drop_last=drop_last)
    sizes = [x.shape[0] for x, _ in loader]
    full, rest = divmod(n, bs)
    expected = [bs] * full + ([rest] if rest and not drop_last else [])
    assert sizes == expected
    assert len(loader) == len(expected)


def test_unshuffled_batches_are_the_samples_in_order():
    ds = make_dataset(7)
    batches = list(DataLoader(ds, batch_size=3))
    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), ds.arrays[0])
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), np.arange(7))


@pytest.mark.parametrize("drop_last", [False, True])
def test_shuffled_epoch_visits_every_sample_once(drop_last):
    n, bs = 23, 4
    loader = DataLoader(make_dataset(n), batch_size=bs, shuffle=True, seed=3, drop_last=drop_last)
    for _ in range(3):
        seen = np.concatenate([y for _, y in loader])
        assert len(seen) == (n // bs * bs if drop_last else n)
        assert len(set(seen.tolist())) == len(seen)
        assert set(seen.tolist()) <= set(range(n))
    # the images travel with their labels
    ds = make_dataset(n)
    for x, y in loader:
        np.testing.assert_array_equal(x, ds.arrays[0][y])


def test_seeded_shuffle_is_reproducible_and_changes_per_epoch():
    a = DataLoader(make_dataset(), batch_size=5, shuffle=True, seed=11)
    b = DataLoader(make_dataset(), batch_size=5, shuffle=True, seed=11)
    epochs_a = [labels_of(a) for _ in range(3)]
    epochs_b = [labels_of(b) for _ in range(3)]
    assert epochs_a == epochs_b
    assert epochs_a[0] != epochs_a[1] != epochs_a[2]
    assert epochs_a[0] != labels_of(DataLoader(make_dataset(), batch_size=5, shuffle=True, seed=12))
    assert a.epoch == 3


def test_manual_seed_makes_unseeded_loaders_reproducible():
    atrous.manual_seed(5)
    first = labels_of(DataLoader(make_dataset(), batch_size=5, shuffle=True))
    atrous.manual_seed(5)
    second = labels_of(DataLoader(make_dataset(), batch_size=5, shuffle=True))
    third = labels_of(DataLoader(make_dataset(), batch_size=5, shuffle=True))
    assert first == second
    assert third != second  # the library generator moved on


def test_generic_dataset_falls_back_to_stacking_items():
    loader = DataLoader(ItemDataset(7), batch_size=3, shuffle=True, seed=0)
    images = np.broadcast_to(np.arange(7, dtype=np.float32)[:, None, None, None], (7, 1, 2, 2))
    twin = DataLoader(TensorDataset(images, np.arange(7)), batch_size=3, shuffle=True, seed=0)
    for (x, y), (tx, ty) in zip(loader, twin):
        assert x.shape == (len(y), 1, 2, 2) and x.dtype == np.float32
        np.testing.assert_array_equal(y, ty)
        np.testing.assert_array_equal(x, tx)
    # a plain sequence of pairs works too
    pairs = [(np.ones(2) * i, i) for i in range(5)]
    (x, y), *_ = DataLoader(pairs, batch_size=5)
    np.testing.assert_array_equal(y, np.arange(5))
    assert x.shape == (5, 2)


def test_transform_applies_to_images_only():
    ds = make_dataset(6)
    loader = DataLoader(ds, batch_size=4, transform=lambda x: -x)
    x, y = next(iter(loader))
    np.testing.assert_array_equal(x, -ds.arrays[0][:4])
    np.testing.assert_array_equal(y, np.arange(4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        DataLoader(make_dataset(), batch_size=0)
    with pytest.raises(TypeError, match="transform must be callable"):
        DataLoader(make_dataset(), transform=3)


# ----- checkpoint / resume -------------------------------------------------------------------
def augmenting_loader(seed=7):
    ds = make_dataset(23, c=2, h=5, w=5)
    t = Compose([RandomCrop(4, padding=1), RandomHorizontalFlip(), Normalize([1.0, 2.0], [3.0, 4.0])])
    return DataLoader(ds, batch_size=4, shuffle=True, seed=seed, transform=t)


def collect(loader, epochs):
    return [[(x.copy(), y.copy()) for x, y in loader] for _ in range(epochs)]


def assert_same_batches(got, want):
    assert len(got) == len(want)
    for (gx, gy), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(gy, wy)
        np.testing.assert_array_equal(gx, wx)


@pytest.mark.parametrize("stop_at", [0, 1, 3, 5, 6])  # 6 batches per epoch: 6 = just after the last
def test_resume_mid_epoch_gives_the_same_remaining_batches(stop_at):
    want = collect(augmenting_loader(), 3)
    flat_want = [b for epoch in want for b in epoch]

    first = augmenting_loader()
    got = [(x.copy(), y.copy()) for x, y in first]  # epoch 0 complete
    it = iter(first)
    for _ in range(stop_at):
        got.append(tuple(a.copy() for a in next(it)))
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint

    resumed = augmenting_loader(seed=999)  # a different seed: everything must come from state
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state  # saving again before iterating loses nothing
    while len(got) < len(flat_want):
        got.extend((x.copy(), y.copy()) for x, y in resumed)
    assert_same_batches(got, flat_want)
    assert resumed.epoch == 3


def test_resume_at_an_epoch_boundary():
    want = collect(augmenting_loader(), 4)
    first = augmenting_loader()
    got = collect(first, 2)
    state = first.state_dict()
    assert state["epoch"] == 2 and state["position"] == 0
    resumed = augmenting_loader(seed=1)
    resumed.load_state_dict(state)
    got += collect(resumed, 2)
    for g, w in zip(got, want):
        assert_same_batches(g, w)


def test_load_state_dict_rejects_another_dataset():
    state = augmenting_loader().state_dict()
    other = DataLoader(make_dataset(24), batch_size=4)
    with pytest.raises(ValueError, match="saved for 23 samples in batches of 4.*has 24 samples"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="missing keys"):
        other.load_state_dict({"epoch": 0})
