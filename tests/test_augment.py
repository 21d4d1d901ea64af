"""The batched on-device augmentation against a slow per-sample reference using the same draws."""
import numpy as np
import torch

from naspoison.data.augment import augment, cutout


def reference_crop_flip(x, oy, ox, flips, padding):
    out = []
    for i in range(x.shape[0]):
        img = np.pad(x[i], ((0, 0), (padding, padding), (padding, padding)))
        h, w = x.shape[2:]
        crop = img[:, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        out.append(crop[:, :, ::-1] if flips[i] else crop)
    return np.stack(out)


def test_crop_and_flip_match_per_sample_reference():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    got = augment(x, torch.Generator().manual_seed(7), padding=2, flip=True)
    g = torch.Generator().manual_seed(7)  # replay the same draws in the same order
    oy = torch.randint(0, 5, (16, 1), generator=g).view(-1).numpy()
    ox = torch.randint(0, 5, (16, 1), generator=g).view(-1).numpy()
    flips = (torch.rand(16, 1, generator=g) < 0.5).view(-1).numpy()
    assert np.array_equal(got.numpy(), reference_crop_flip(x.numpy(), oy, ox, flips, 2))
    assert got.dtype == torch.uint8


def test_no_padding_no_flip_is_identity():
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), 0, False), x)


def test_cutout_matches_reference_box_clipped_at_border():
    x = torch.ones(32, 2, 8, 8)
    got = cutout(x, torch.Generator().manual_seed(3), 4)
    g = torch.Generator().manual_seed(3)
    cy = torch.randint(0, 8, (32, 1, 1), generator=g).view(-1).numpy()
    cx = torch.randint(0, 8, (32, 1, 1), generator=g).view(-1).numpy()
    for i in range(32):
        ref = np.ones((8, 8))
        ref[max(cy[i] - 2, 0):min(cy[i] + 2, 8), max(cx[i] - 2, 0):min(cx[i] + 2, 8)] = 0
        assert np.array_equal(got[i, 0].numpy(), ref) and np.array_equal(got[i, 1].numpy(), ref)


def test_one_channel_batches_have_plain_nchw_strides():
    # a permuted 1-channel NHWC tensor counts as contiguous but keeps channels-last strides; torch 2.14's CPU
    # convolution backward corrupts the heap on those at one thread (the Evas pipeline test crashed)
    from naspoison.data.augment import DeviceImages

    x = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8, 1)
    imgs = DeviceImages(x, np.zeros(4), torch.device("cpu"), np.zeros(1), np.ones(1))
    assert imgs.x.stride() == (64, 64, 8, 1) and torch.equal(imgs.x[:, 0], torch.from_numpy(x[..., 0]))
    out = augment(imgs.x, torch.Generator().manual_seed(0), 1, True)
    assert out.stride() == (64, 64, 8, 1)
