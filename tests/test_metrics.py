"""Segmentation metrics: confusion matrix, pixel accuracy, IoU, the streaming accumulator.

Oracles: plain loops over pixels and classes written here, and scikit-learn's
``confusion_matrix`` / ``jaccard_score`` (skipped with a reason where it is absent).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrous
from atrous import metrics


def loop_confusion(pred, target, K, ignore_index=None):
    cm = np.zeros((K, K), dtype=np.int64)
    for p, t in zip(np.ravel(pred), np.ravel(target)):
        if ignore_index is not None and t == ignore_index:
            continue
        cm[t, p] += 1
    return cm


def loop_iou(pred, target, K, ignore_index=None):
    """IoU per class from pixel sets; None for a class in neither pred nor target."""
    out = []
    pairs = [(p, t) for p, t in zip(np.ravel(pred), np.ravel(target))
             if ignore_index is None or t != ignore_index]
    for c in range(K):
        inter = sum(1 for p, t in pairs if p == c and t == c)
        union = sum(1 for p, t in pairs if p == c or t == c)
        out.append(inter / union if union else None)
    return out


@st.composite
def labelled(draw):
    K = draw(st.integers(1, 6))
    shape = draw(st.sampled_from([(2, 3, 4), (3, 5, 2), (1, 7, 7), (4, 1, 3)]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    # Fewer classes in use than K sometimes, so absent classes (NaN IoU) occur.
    used = draw(st.integers(1, K))
    target = rng.integers(0, used, shape)
    pred = rng.integers(0, K, shape)
    ignore = draw(st.sampled_from([None, 255, -1]))
    if ignore is not None:
        target = np.where(rng.random(shape) < 0.2, ignore, target)
    return pred, target, K, ignore


@given(labelled())
def test_confusion_matrix_matches_loop_and_derived_metrics(case):
    pred, target, K, ignore = case
    cm = metrics.confusion_matrix(pred, target, K, ignore_index=ignore)
    want = loop_confusion(pred, target, K, ignore)
    np.testing.assert_array_equal(cm, want)
    assert cm.dtype == np.int64 and cm.shape == (K, K)

    ref_iou = loop_iou(pred, target, K, ignore)
    iou = metrics.iou_per_class(pred, target, K, ignore_index=ignore)
    for got, w in zip(iou, ref_iou):
        assert (math.isnan(got) and w is None) or got == pytest.approx(w)
    present = [v for v in ref_iou if v is not None]
    miou = metrics.mean_iou(cm)
    if present:
        assert miou == pytest.approx(sum(present) / len(present))
    else:
        assert math.isnan(miou)
    counted = [(p, t) for p, t in zip(pred.ravel(), target.ravel()) if ignore is None or t != ignore]
    acc = metrics.pixel_accuracy(pred, target, K, ignore_index=ignore)
    if counted:
        assert acc == pytest.approx(sum(p == t for p, t in counted) / len(counted))
    else:
        assert math.isnan(acc)
    for c, a in enumerate(metrics.class_accuracy(cm)):
        of_c = [p for p, t in counted if t == c]
        assert (math.isnan(a) and not of_c) or a == pytest.approx(sum(p == c for p in of_c) / len(of_c))


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: "a single label was found"
@given(labelled())
def test_confusion_matrix_matches_sklearn(case):
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")
    pred, target, K, ignore = case
    keep = np.ones(target.shape, bool) if ignore is None else target != ignore
    want = skm.confusion_matrix(target[keep], pred[keep], labels=list(range(K)))
    np.testing.assert_array_equal(metrics.confusion_matrix(pred, target, K, ignore), want)
    if keep.any():
        # jaccard_score gives zero_division (0) where we give NaN (class in neither).
        jac = skm.jaccard_score(target[keep], pred[keep], labels=list(range(K)), average=None,
                                zero_division=0)
        iou = metrics.iou_per_class(want)
        absent = np.isnan(iou)
        np.testing.assert_allclose(iou[~absent], jac[~absent])
        assert np.all(jac[absent] == 0)


def test_scores_are_argmaxed_and_outputs_accepted():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    target = rng.integers(0, 4, (2, 5, 6))
    want = loop_confusion(scores.argmax(1), target, 4)
    np.testing.assert_array_equal(metrics.confusion_matrix(scores, target, 4), want)
    np.testing.assert_array_equal(metrics.confusion_matrix(atrous.Tensor(scores), target, 4), want)
    np.testing.assert_array_equal(
        metrics.confusion_matrix({"out": atrous.Tensor(scores)}, atrous.Tensor(target), 4), want)


def test_hand_example_nan_for_absent_zero_for_false_positive():
    target = np.array([[0, 0, 1, 1, 9]])
    pred = np.array([[0, 2, 1, 1, 3]])
    cm = metrics.confusion_matrix(pred, target, 4, ignore_index=9)
    # class 0: 1 hit, 1 miss (predicted 2); class 1: 2 hits; class 2: one false positive.
    np.testing.assert_array_equal(cm, [[1, 0, 1, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    iou = metrics.iou_per_class(cm)
    np.testing.assert_array_equal(iou[:3], [0.5, 1.0, 0.0])
    assert math.isnan(iou[3])
    assert metrics.mean_iou(cm) == pytest.approx(0.5)
    assert metrics.pixel_accuracy(cm) == 0.75


def test_streaming_equals_all_at_once():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 5, (6, 8, 8))
    target[rng.random(target.shape) < 0.1] = 255
    pred = rng.integers(0, 5, (6, 8, 8))
    acc = metrics.SegmentationMetrics(5, ignore_index=255, class_names=list("abcde"))
    for i in range(0, 6, 2):
        acc.update(pred[i:i + 2], target[i:i + 2])
    whole = metrics.confusion_matrix(pred, target, 5, ignore_index=255)
    np.testing.assert_array_equal(acc.confusion, whole)
    r = acc.compute()
    assert r["mean_iou"] == pytest.approx(metrics.mean_iou(whole))
    assert r["pixel_accuracy"] == pytest.approx(metrics.pixel_accuracy(whole))
    assert r["pixels"] == int((target != 255).sum())
    np.testing.assert_allclose(r["iou"], metrics.iou_per_class(whole))
    assert "mean IoU" in str(acc) and "\ne " in str(acc)
    acc.reset()
    assert acc.confusion.sum() == 0 and math.isnan(acc.compute()["mean_iou"])


def test_errors_name_the_problem():
    t = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match=r"confusion_matrix: target holds label 2, outside \[0, 2\)"):
        metrics.confusion_matrix(np.array([[0, 1, 1]]), t, 2)
    with pytest.raises(ValueError, match="pred holds label 5"):
        metrics.confusion_matrix(np.array([[0, 1, 5]]), t, 3)
    with pytest.raises(ValueError, match=r"pred must have the target's shape.*\(1, 2\)"):
        metrics.confusion_matrix(np.array([[0, 1]]), t, 3)
    with pytest.raises(TypeError, match="integers"):
        metrics.confusion_matrix(np.array([[0.0, 1.0, 1.0]]), t, 3)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        metrics.confusion_matrix(t, t, 0)
    with pytest.raises(ValueError, match="square confusion matrix"):
        metrics.mean_iou(np.zeros((2, 3)))
