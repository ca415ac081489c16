"""Receptive fields against a brute-force oracle, and conv_output_size against counting.

The oracle perturbs one input pixel at a time and sees which output units change. The nets
under test are monotone (positive weights, positive input, ReLU, max/avg pooling, sums), so
raising one pixel by a huge amount raises every unit that depends on it (a raised unit also
becomes the maximum of any max-pooling window holding it) and leaves every other unit as it
was: the set of changed units is exactly the set of dependent ones. All H*W perturbations
run as one batch.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import atrous
import atrous.functional as F
from atrous import nn
from atrous.analysis import conv_output_size, receptive_field
from atrous.analysis.rf_rules import Axis, union

BIG = 1e12


def positive(net, seed=0):
    """Float64 copy of every parameter drawn from U(0.5, 1.5): a monotone network."""
    rng = np.random.default_rng(seed)
    for p in net.parameters():
        p.data = rng.uniform(0.5, 1.5, p.shape)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # eval mode: y = x (mean 0, var 1) * gamma + beta
            m.running_mean = np.zeros(m.num_features)
            m.running_var = np.ones(m.num_features)
    return net.eval()


def dependence_boxes(net, shape, seed=1):
    """For each output unit, the bounding box (rows, cols) of the input pixels it depends on.

    Returns an array (Ho, Wo, 4) of (top, bottom, left, right), -1 where a unit depends on
    no pixel; a non-4-D output is treated as one unit.
    """
    C, H, W = shape
    base = np.random.default_rng(seed).uniform(0.5, 1.5, (1, C, H, W))
    batch = np.repeat(base, H * W + 1, axis=0)
    hh, ww = np.divmod(np.arange(H * W), W)
    batch[1 + np.arange(H * W), :, hh, ww] += BIG
    out = np.asarray(net(atrous.Tensor(batch)).data)
    if out.ndim != 4:
        out = out.reshape(out.shape[0], -1, 1, 1)
    # Unaffected units are equal up to rounding (values stay far below 1e9); affected ones
    # grow by at least BIG * 0.5**depth / window area, far above the threshold.
    changed = (np.abs(out[1:] - out[:1]) > 1.0).any(axis=1)  # (H*W, Ho, Wo)
    Ho, Wo = changed.shape[1:]
    boxes = np.full((Ho, Wo, 4), -1)
    for i in range(Ho):
        for j in range(Wo):
            pix = np.flatnonzero(changed[:, i, j])
            if pix.size:
                boxes[i, j] = hh[pix].min(), hh[pix].max(), ww[pix].min(), ww[pix].max()
    return boxes


def check_against_oracle(net, shape):
    """Every unit's reported window, clipped to the image, contains its dependence box, and
    equals it for units whose box stays strictly inside the reachable part of the image
    (pixels some unit sees: a floor-mode stride can leave the last rows unseen). Only at
    that border can a hole of a dilated kernel or the image edge hide an end of the window.
    Returns the field and how many rows and columns of units were checked exactly."""
    net = positive(net)
    rf = receptive_field(net, shape)
    boxes = dependence_boxes(net, shape)
    C, H, W = shape
    assert (boxes[..., 0] >= 0).all(), "a unit depends on no pixel"
    top_min, bottom_max = boxes[..., 0].min(), boxes[..., 1].max()
    left_min, right_max = boxes[..., 2].min(), boxes[..., 3].max()
    exact_rows, exact_cols = set(), set()
    for i in range(boxes.shape[0]):
        for j in range(boxes.shape[1]):
            top, bottom, left, right = boxes[i, j]
            (r0, r1), (c0, c1) = rf.window(i, j)
            assert max(r0, 0) <= top and bottom <= min(r1, H - 1), (i, j, (r0, r1), boxes[i, j])
            assert max(c0, 0) <= left and right <= min(c1, W - 1), (i, j, (c0, c1), boxes[i, j])
            if top_min < top and bottom < bottom_max:
                assert (r0, r1) == (top, bottom), (i, j, rf, boxes[i, j])
                exact_rows.add(i)
            if left_min < left and right < right_max:
                assert (c0, c1) == (left, right), (i, j, rf, boxes[i, j])
                exact_cols.add(j)
    return rf, len(exact_rows), len(exact_cols)


# ----- hand-built nets ---------------------------------------------------------------------
def test_alexnet_conv1_field_is_its_kernel():
    rf = receptive_field(nn.Conv2d(3, 96, 11, stride=4), (3, 227, 227))
    assert (rf.size, rf.jump, rf.start, rf.output_hw) == ((11, 11), (4, 4), (5, 5), (55, 55))


def test_conv_pool_chain_per_axis_matches_oracle():
    # Non-square kernels, strides and padding, so H and W differ; an even max-pool window.
    net = nn.Sequential(
        nn.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(1, 0)), nn.ReLU(),
        nn.MaxPool2d(2, stride=2), nn.BatchNorm2d(3),
        nn.Conv2d(3, 2, (2, 3), stride=1, padding=(0, 1), dilation=(2, 1)),
        nn.AvgPool2d(3, stride=(2, 1), padding=1),
    )
    rf, rows, cols = check_against_oracle(net, (2, 30, 34))
    assert rows >= 2 and cols >= 2
    # By hand, (size, jump, start) rows: conv k3 p1 -> (3, 1, 0); pool 2/2 -> (4, 2, 0.5);
    # conv k2 d2 (spans 3) -> (8, 2, 2.5); avg 3/2 p1 -> (12, 4, 2.5). Columns: conv k2 s2 ->
    # (2, 2, 0.5); pool 2/2 -> (4, 4, 1.5); conv k3 p1 -> (12, 4, 1.5); avg 3/1 p1 -> (20, 4, 1.5).
    assert rf.size == (12, 20) and rf.jump == (4, 4) and rf.start == (2.5, 1.5)


class Residual(nn.Module):
    """Two 3x3 convolutions plus a shortcut (identity, or a strided 1x1 projection)."""

    def __init__(self, c, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU()
        self.down = nn.Conv2d(c, c, 1, stride=stride) if stride > 1 else None

    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        return self.relu(self.conv2(self.relu(self.conv1(x))) + identity)


def test_residual_blocks_match_oracle():
    net = nn.Sequential(nn.Conv2d(2, 2, 3), Residual(2), nn.MaxPool2d(2), Residual(2, stride=2))
    rf, rows, cols = check_against_oracle(net, (2, 40, 40))
    assert rows >= 2 and cols >= 2
    # (size, jump, start): conv 3 (3,1,1); block +2+2 (7,1,1); pool (8,2,1.5); strided block:
    # conv1 +2*2 (12,4,1.5), conv2 +2*4 (20,4,1.5); the 1x1 projection (8,4,1.5) lies inside.
    assert rf.size == (20, 20) and rf.jump == (4, 4) and rf.start == (1.5, 1.5)


class OffsetBranches(nn.Module):
    """Two branches whose windows have different centres, written functionally: a 3x3 conv
    (unit i sees rows i..i+2) and a 2x2 average pool shifted by two pixels (rows i+2..i+3),
    both cropped to the same size and added: unit i sees rows i..i+3."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(np.ones((2, 2, 3, 3)))

    def forward(self, x):
        a = F.conv2d(x, self.weight)[:, :, :-1, :-1]
        b = F.avg_pool2d(x[..., 2:, 2:], 2, stride=1)
        return a + b


def test_branches_with_different_centres_take_the_union():
    rf, rows, cols = check_against_oracle(OffsetBranches(), (2, 12, 12))
    assert rows >= 2 and cols >= 2
    assert rf.size == (4, 4) and rf.jump == (1, 1) and rf.start == (1.5, 1.5)


class FunctionalNet(nn.Module):
    """conv, pad, max pool and cat called functionally (no layer modules to hook)."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(np.ones((2, 2, 3, 3)))
        self.w2 = nn.Parameter(np.ones((2, 2, 1, 1)))

    def forward(self, x):                                        # 34x34
        y = F.conv2d(x, self.w1, stride=2, padding=1)            # 17x17
        y = F.pad(y, (1, 0, 2, 1))                                # left 1, top 2: 20x18
        y = F.max_pool2d(y, 3, stride=1, dilation=2)              # k_eff 5: 16x14
        z = F.conv2d(F.pad(x, (1, 1, 1, 1)), self.w2, stride=2)   # 1x1 on padded input: 18x18
        z = F.avg_pool2d(z, 2, stride=1)[:, :, 1:, 3:]            # 17x17 cropped to 16x14
        return F.adaptive_max_pool2d(F.cat([y, z], 1), (8, 7))     # bins of 2x2


def test_functional_ops_are_followed_through_the_graph():
    rf, rows, cols = check_against_oracle(FunctionalNet(), (2, 34, 34))
    assert rows >= 2 and cols >= 2
    assert rf.exact and rf.output_hw == (8, 7)


def test_same_padding_with_an_even_kernel_puts_the_extra_pixel_last():
    net = nn.Sequential(nn.Conv2d(1, 1, 4, padding="same"), nn.Conv2d(1, 1, (2, 5), padding="same"))
    rf, rows, cols = check_against_oracle(net, (1, 16, 16))
    assert rows >= 2 and cols >= 2
    # k=4 same: lo = 1 -> start 0.5; then k=2 lo=0 -> 1.0 (rows); k=5 lo=2 -> 0.5 (cols).
    assert rf.size == (5, 8) and rf.start == (1, 0.5)


def test_inception_style_cat_of_branches():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.b1 = nn.Conv2d(2, 1, 1)
            self.b2 = nn.Conv2d(2, 1, 5, padding=2)
            self.b3 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(2, 1, 1))

        def forward(self, x):
            return F.cat([self.b1(x), self.b2(x), self.b3(x)], 1)

    rf, rows, cols = check_against_oracle(Block(), (2, 12, 12))
    assert rf.size == (5, 5) and rf.start == (0, 0)


def test_flatten_and_linear_see_the_whole_map():
    # 9x9 -> conv 3/2 -> 4x4 units of field 3, jump 2, start 1; flatten joins them into one
    # unit covering rows 0..8: size 3 + 3*2 = 9, centre 1 + 1.5*2 = 4.
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten(), nn.Linear(32, 3))
    rf = receptive_field(net, (1, 9, 9))
    assert (rf.size, rf.start, rf.output_hw) == ((9, 9), (4, 4), None)
    boxes = dependence_boxes(positive(net), (1, 9, 9))
    assert boxes.tolist() == [[[0, 8, 0, 8]]]


def test_global_average_pool_after_residual_stack():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), Residual(2), nn.AdaptiveAvgPool2d(1))
    rf = receptive_field(net, (1, 10, 10))
    # 10 -> 5 units (field 3 + 2*2*2 = 11, jump 2, start 0); pooled: 11 + 4*2 = 19, centre 4.
    assert (rf.size, rf.jump, rf.start, rf.output_hw) == ((19, 19), (10, 10), (4, 4), (1, 1))


def test_strided_slice_and_unknown_resampling():
    class Net(nn.Module):
        def forward(self, x):
            return x[:, :, 1::2, ::3]  # rows 1, 3, 5, ...; columns 0, 3, 6, ...

    rf = receptive_field(Net(), (1, 9, 9))
    assert (rf.size, rf.jump, rf.start, rf.exact) == ((1, 1), (2, 3), (1, 0), True)

    class Up(nn.Module):  # an op the tracker has no rule for: an upper bound, and a note
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="nearest")

    rf = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), Up()), (1, 8, 8))
    assert not rf.exact and "unknown way" in rf.notes[0]
    assert rf.size == (3 + 5, 3 + 5)  # each unit is taken to see the whole 6x6 map of fields


# ----- dilation (Yu & Koltun) -----------------------------------------------------------------
def test_dilated_stack_grows_the_field_exponentially_at_constant_parameters():
    C = 2
    dilated = nn.Sequential(*[nn.Conv2d(C, C, 3, padding=r, dilation=r, bias=False) for r in (1, 2, 4, 8)])
    plain = nn.Sequential(*[nn.Conv2d(C, C, 3, padding=1, bias=False) for _ in range(4)])
    assert sum(p.size for p in dilated.parameters()) == sum(p.size for p in plain.parameters()) == 4 * 9 * C * C
    assert receptive_field(plain, (C, 40, 40)).size == (9, 9)
    rf, rows, cols = check_against_oracle(dilated, (C, 40, 40))
    assert rf.size == (31, 31) and rf.jump == (1, 1)
    assert rows >= 2 and cols >= 2
    # The oracle sees the whole 31x31 square, without holes, at an interior unit.
    net = positive(dilated)
    boxes = dependence_boxes(net, (C, 40, 40))
    assert tuple(boxes[20, 20]) == (5, 35, 5, 35)


# ----- random nets ------------------------------------------------------------------------------
@st.composite
def layer_stacks(draw):
    """1-3 random conv / max-pool / avg-pool layers (optionally after a residual block)."""
    layers = [Residual(2)] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "max", "avg"]))
        k, s = draw(st.integers(1, 4)), draw(st.integers(1, 2))
        if kind == "conv":
            d = draw(st.integers(1, 3))
            p = d * draw(st.integers(0, (k - 1) // 2))  # a multiple of d: no hole at the border
            layers += [nn.Conv2d(2, 2, k, stride=s, padding=p, dilation=d), nn.ReLU()]
        elif kind == "max":
            d = draw(st.integers(1, 2))
            p = draw(st.integers(0, k // 2)) if d == 1 else 0
            layers.append(nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=draw(st.booleans())))
        else:
            p = draw(st.integers(0, k // 2))
            layers.append(nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=draw(st.booleans())))
    return nn.Sequential(*layers), draw(st.integers(20, 30))


@settings(max_examples=25)
@given(layer_stacks())
def test_random_stacks_match_the_oracle(stack):
    net, n = stack
    try:
        out = net(np.zeros((1, 2, n, n + 3), np.float32))
    except ValueError:
        assume(False)  # an output smaller than 1x1
    assume(min(out.shape[2:]) >= 3)
    rf, rows, cols = check_against_oracle(net, (2, n, n + 3))
    assume(rows >= 2 and cols >= 2)  # otherwise only containment was checked


# ----- union arithmetic ------------------------------------------------------------------------
def test_union_of_branches_with_different_jumps_reports_the_widest_unit():
    a, b = Axis(3, 1, 1), Axis(1, 2, 0)  # unit i: [i, i+2] and [2i, 2i]
    u = union([(a, 4), (b, 4)], 4)
    # unit 0: [0, 2] (3 wide); unit 3: [3, 6] (4 wide).
    assert u.size == 4 and u.start == 1 and u.jump == pytest.approx((4.5 - 1) / 3)


# ----- conv_output_size ------------------------------------------------------------------------
def count_windows(size, kernel, stride, lo, hi, dilation, ceil_mode):
    """Slide the window over the padded input and count the positions PyTorch keeps."""
    span = dilation * (kernel - 1)
    count = 0
    for start in range(0, size + lo + hi + stride * 2, stride):  # start in padded coordinates
        fits = start + span <= size + lo + hi - 1
        # ceil mode also keeps a window that runs off the end, if it starts in the input
        # or the left padding and the previous window did not already reach the end.
        overhang = ceil_mode and start < size + lo and start - stride + span < size + lo + hi - 1
        if fits or overhang:
            count += 1
    return count


@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 4), st.integers(0, 3),
       st.integers(0, 3), st.integers(1, 3))
def test_conv_output_size_counts_window_positions(size, kernel, stride, lo, hi, dilation):
    expected = count_windows(size, kernel, stride, lo, hi, dilation, ceil_mode=False)
    assume(expected > 0)
    assert conv_output_size(size, kernel, stride, (lo, hi), dilation) == expected


@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3))
def test_conv_output_size_ceil_mode_counts_window_positions(size, kernel, stride, padding, dilation):
    assume(padding <= kernel // 2)  # pooling's rule, the only place ceil mode exists
    expected = count_windows(size, kernel, stride, padding, padding, dilation, ceil_mode=True)
    assume(expected > 0)
    assert conv_output_size(size, kernel, stride, padding, dilation, ceil_mode=True) == expected


def test_conv_output_size_seed_numbers():
    assert conv_output_size(227, 11, stride=4) == 55
    assert conv_output_size(224, 7, 2, 3) == 112
    assert conv_output_size(384, 7) == 378
    assert conv_output_size(5, 3, 2, 0, ceil_mode=True) == 2


@settings(max_examples=60)
@given(st.integers(1, 30), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2),
       st.integers(1, 3), st.booleans())
def test_conv_output_size_matches_torch(torch, size, kernel, stride, padding, dilation, ceil_mode):
    assume(padding <= kernel // 2)
    expected_conv = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    assume(conv_output_size(size, kernel, stride, padding, dilation) >= 1 and expected_conv >= 1)
    x = torch.zeros(1, 1, size, size)
    y = torch.nn.functional.conv2d(x, torch.zeros(1, 1, kernel, kernel), stride=stride,
                                   padding=padding, dilation=dilation)
    assert conv_output_size(size, kernel, stride, padding, dilation) == y.shape[-1]
    try:
        p = torch.nn.functional.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    except RuntimeError:
        return  # torch rejects an output size < 1; so does the formula's caller
    assert conv_output_size(size, kernel, stride, padding, dilation, ceil_mode) == p.shape[-1]
