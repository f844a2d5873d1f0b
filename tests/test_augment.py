"""Image transforms for training-time and query augmentation."""

import numpy as np
import torch

from mialens.augment import Transform, query_transforms, random_augment, shift_images

X = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)


def test_shift_moves_content_and_zero_fills():
    np.testing.assert_array_equal(shift_images(X, 1, 0)[0, 0], [[0, 0, 0], [0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(shift_images(X, 0, -1)[0, 0], [[1, 2, 0], [4, 5, 0], [7, 8, 0]])
    np.testing.assert_array_equal(shift_images(X, -1, 1)[0, 0], [[0, 3, 4], [0, 6, 7], [0, 0, 0]])


def test_flip_mirrors_width():
    np.testing.assert_array_equal(Transform(flip=True)(X)[0, 0], [[2, 1, 0], [5, 4, 3], [8, 7, 6]])


def test_query_transforms_start_with_identity_and_cover_the_grid():
    views = query_transforms(flip=True, shift=1)
    assert views[0].is_identity
    assert len(views) == 18 and len(set(views)) == 18
    assert {(v.dy, v.dx) for v in views} == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    assert query_transforms(flip=False, shift=0) == [Transform()]


def test_random_augment_is_seeded_and_preserves_shape():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    a = random_augment(x, True, 2, torch.Generator().manual_seed(3))
    b = random_augment(x, True, 2, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    # every output is some flip/shift of its input: channel sums can only shrink
    assert (a.sum(dim=(2, 3)) <= x.sum(dim=(2, 3)) + 1e-6).all()
    assert torch.equal(random_augment(x, False, 0, torch.Generator()), x)
