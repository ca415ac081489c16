"""kernels.parallel_copy: the threaded copy equals ``dst[...] = src`` for every layout it meets
(strided views, transposes, broadcasts, odd splits), falls back below its size limit and with one
thread, and works in a forked child (whose inherited pool has no threads)."""
import multiprocessing
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atrous
from atrous.kernels import parallel_copy


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(parallel_copy, "MIN_BYTES", 0)  # thread every copy, however small


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    threads=st.integers(1, 4),
    transpose=st.booleans(),
    step=st.integers(1, 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_equals_plain_assignment(shape, threads, transpose, step, seed):
    rng = np.random.default_rng(seed)
    big = rng.standard_normal([s * step for s in shape]).astype(np.float32)
    src = big[tuple(slice(None, None, step) for _ in shape)]  # a strided view
    if transpose:
        src = src.transpose(tuple(reversed(range(src.ndim))))
    dst = np.full(src.shape, np.nan, np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel_copy, "MIN_BYTES", 0)
        mp.setattr(parallel_copy, "_threads", lambda: threads)
        parallel_copy.copy(dst, src)
    np.testing.assert_array_equal(dst, src)


def test_broadcast_source_and_strided_destination(small_limit):
    dst_base = np.zeros((6, 10), np.float64)
    dst = dst_base[:, 1::2]  # every other column
    parallel_copy.copy(dst, np.arange(5.0))
    np.testing.assert_array_equal(dst_base[:, 1::2], np.broadcast_to(np.arange(5.0), (6, 5)))
    assert not dst_base[:, ::2].any()  # untouched


def test_small_copies_and_one_thread_stay_in_the_caller(monkeypatch):
    calls = []
    monkeypatch.setattr(parallel_copy, "_executor", lambda n: calls.append(n))
    a = np.zeros((4, 4))
    parallel_copy.copy(a, np.ones((4, 4)))  # 128 bytes < MIN_BYTES
    monkeypatch.setattr(parallel_copy, "MIN_BYTES", 0)
    monkeypatch.setattr(parallel_copy, "_threads", lambda: 1)
    parallel_copy.copy(a, np.full((4, 4), 2.0))
    assert calls == [] and (a == 2).all()


def test_uses_the_thread_count_of_set_num_threads(monkeypatch):
    old = atrous.get_num_threads()
    try:
        atrous.set_num_threads(3)
        assert parallel_copy._threads() == 3
    finally:
        atrous.set_num_threads(old)


def _child(queue):
    a = np.zeros((64, 1024), np.float32)
    parallel_copy.copy(a, np.ones((64, 1024), np.float32))
    queue.put(float(a.sum()))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method: Linux only")
def test_works_in_a_forked_child(monkeypatch):
    monkeypatch.setattr(parallel_copy, "MIN_BYTES", 0)
    monkeypatch.setattr(parallel_copy, "_threads", lambda: 2)
    a = np.zeros((8, 8))
    parallel_copy.copy(a, np.ones((8, 8)))  # the parent's pool now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(queue,))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and queue.get(timeout=5) == 64 * 1024
