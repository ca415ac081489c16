"""Bad arguments give ValueError/TypeError naming the op, the argument and the values."""
import re

import numpy as np
import pytest

import atrous.functional as F
from atrous import Tensor

X = np.zeros((2, 4, 8, 8), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)


def raises(exc, *words):
    """pytest.raises whose message must contain every word (regex-escaped)."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(w)})" for w in words))


# ----- conv2d: one test per case of the issue ------------------------------------------------
def test_wrong_rank():
    with raises(ValueError, "conv2d", "input", "3-D or 4-D", "2-D"):
        F.conv2d(np.zeros((4, 8), np.float32), W)
    with raises(ValueError, "conv2d", "weight", "4-D", "3-D"):
        F.conv2d(X, np.zeros((6, 4, 3), np.float32))


def test_channels_do_not_match_weight_times_groups():
    with raises(ValueError, "conv2d", "4 channels", "weight expects 6", "weight.shape[1]=3", "groups=2"):
        F.conv2d(X, np.zeros((6, 3, 3, 3), np.float32), groups=2)
    with raises(ValueError, "conv2d", "4 channels", "weight expects 3", "weight.shape[1]=3"):
        F.conv2d(X, np.zeros((6, 3, 3, 3), np.float32))


def test_groups_must_divide_channels():
    with raises(ValueError, "conv2d", "groups=3", "4"):
        F.conv2d(X, np.zeros((6, 1, 3, 3), np.float32), groups=3)
    with raises(ValueError, "conv2d", "groups=4", "out_channels", "6"):
        F.conv2d(X, np.zeros((6, 1, 3, 3), np.float32), groups=4)
    with raises(ValueError, "conv2d", "groups", "0"):
        F.conv2d(X, W, groups=0)


@pytest.mark.parametrize("name", ["stride", "dilation"])
def test_stride_and_dilation_at_least_one(name):
    with raises(ValueError, "conv2d", name, ">= 1", "0"):
        F.conv2d(X, W, **{name: 0})
    with raises(ValueError, "conv2d", name, "(1, -1)"):
        F.conv2d(X, W, **{name: (1, -1)})


def test_negative_padding():
    with raises(ValueError, "conv2d", "padding", ">= 0", "-1"):
        F.conv2d(X, W, padding=-1)
    with raises(ValueError, "conv2d", "padding", "'full'"):
        F.conv2d(X, W, padding="full")


def test_output_size_below_one_names_the_formula_inputs():
    with raises(ValueError, "conv2d", "output size (-2, -2)", "input size=(8, 8)", "kernel_size=(3, 3)",
                "dilation=(5, 5)", "stride=(1, 1)", "padding=((0, 0), (0, 0))"):
        F.conv2d(X, W, dilation=5)
    with raises(ValueError, "conv2d", "output size (0, 6)"):
        F.conv2d(X, np.zeros((6, 4, 9, 3), np.float32))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, object])
def test_integer_or_object_dtypes(dtype):
    with raises(TypeError, "conv2d", "input", "floating", str(np.dtype(dtype))):
        F.conv2d(X.astype(dtype), W)
    with raises(TypeError, "conv2d", "weight", "floating", str(np.dtype(dtype))):
        F.conv2d(X, W.astype(dtype))


def test_mismatched_dtypes():
    with raises(TypeError, "conv2d", "input", "float64", "weight", "float32"):
        F.conv2d(X.astype(np.float64), W)
    with raises(TypeError, "conv2d", "bias", "float64"):
        F.conv2d(X, W, np.zeros(6))


def test_same_padding_with_stride():
    with raises(ValueError, "conv2d", "padding='same'", "stride=(2, 1)"):
        F.conv2d(X, W, stride=(2, 1), padding="same")


def test_bias_shape():
    with raises(ValueError, "conv2d", "bias", "(6,)", "(5,)"):
        F.conv2d(X, W, np.zeros(5, np.float32))


def test_tensor_inputs_are_checked_too():
    with raises(ValueError, "conv2d", "input", "weight expects"):
        F.conv2d(Tensor(np.zeros((1, 3, 5, 5), np.float32)), Tensor(W))


# ----- conv_transpose2d, unfold, fold, linear ------------------------------------------------
def test_conv_transpose2d_errors():
    w = np.zeros((4, 3, 3, 3), np.float32)
    with raises(ValueError, "conv_transpose2d", "input", "4-D"):
        F.conv_transpose2d(np.zeros((8, 8), np.float32), w)
    with raises(ValueError, "conv_transpose2d", "6 channels", "weight expects 4", "weight.shape[0]"):
        F.conv_transpose2d(np.zeros((1, 6, 5, 5), np.float32), w)
    with raises(ValueError, "conv_transpose2d", "groups=3", "4"):
        F.conv_transpose2d(X, w, groups=3)
    with raises(ValueError, "conv_transpose2d", "stride", "0"):
        F.conv_transpose2d(X, w, stride=0)
    with raises(ValueError, "conv_transpose2d", "padding", "-1"):
        F.conv_transpose2d(X, w, padding=-1)
    with raises(ValueError, "conv_transpose2d", "output_padding=(2, 2)", "stride=(2, 2)", "dilation=(1, 1)"):
        F.conv_transpose2d(X, w, stride=2, output_padding=2)
    with raises(ValueError, "conv_transpose2d", "output size", "padding=(5, 5)"):
        F.conv_transpose2d(np.zeros((1, 4, 2, 2), np.float32), w, padding=5)
    with raises(TypeError, "conv_transpose2d", "input", "float64", "weight", "float32"):
        F.conv_transpose2d(X.astype(np.float64), w)
    with raises(TypeError, "conv_transpose2d", "input", "floating", "int64"):
        F.conv_transpose2d(X.astype(np.int64), w)
    with raises(ValueError, "conv_transpose2d", "padding", "'same'"):
        F.conv_transpose2d(X, w, padding="same")


def test_unfold_and_fold_errors():
    with raises(ValueError, "unfold", "input", "3-D or 4-D"):
        F.unfold(np.zeros((8, 8), np.float32), 3)
    with raises(ValueError, "unfold", "kernel_size", "0"):
        F.unfold(X, 0)
    with raises(ValueError, "unfold", "output size", "kernel_size=(9, 9)"):
        F.unfold(X, 9)
    with raises(TypeError, "unfold", "input", "floating", "int64"):
        F.unfold(X.astype(np.int64), 3)
    with raises(ValueError, "fold", "input.shape[-2]=10", "kernel_size[0]*kernel_size[1]=9"):
        F.fold(np.zeros((1, 10, 4), np.float32), (4, 4), 3)
    with raises(ValueError, "fold", "input.shape[-1]=5", "2*2=4", "output_size=(4, 4)"):
        F.fold(np.zeros((1, 9, 5), np.float32), (4, 4), 3)
    with raises(ValueError, "fold", "stride", "0"):
        F.fold(np.zeros((1, 9, 4), np.float32), (4, 4), 3, stride=0)


def test_linear_errors():
    with raises(ValueError, "linear", "weight", "2-D", "3-D"):
        F.linear(np.zeros((2, 3), np.float32), np.zeros((4, 3, 1), np.float32))
    with raises(ValueError, "linear", "input.shape[-1]", "3", "weight.shape[1]", "5"):
        F.linear(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32))
    with raises(TypeError, "linear", "input", "float64", "weight", "float32"):
        F.linear(np.zeros((2, 3)), np.zeros((4, 3), np.float32))
    with raises(TypeError, "linear", "input", "floating", "int64"):
        F.linear(np.zeros((2, 3), np.int64), np.zeros((4, 3), np.float32))
    with raises(ValueError, "linear", "bias", "(4,)", "(3,)"):
        F.linear(np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros(3, np.float32))
