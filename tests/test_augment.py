"""Event-frame augmentation: shapes, value ranges, parameter ranges, one draw for all time steps, determinism."""

import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F1

from pfa.data.augment import OPS, EventAugment, build_augment
from pfa.errors import UserError


def _frames(T=3, size=24, seed=0):
    """Integer event counts, the same frame repeated over T so per-step differences show up."""
    frame = torch.randint(0, 4, (2, size, size), generator=torch.Generator().manual_seed(seed)).float()
    return frame.expand(T, -1, -1, -1).clone()


def _only(op, seed, flip_p=0.0, **kwargs):
    return EventAugment(ops=(op,), flip_p=flip_p, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.mark.parametrize("op", OPS)
def test_each_op_keeps_shape_and_values_and_treats_all_steps_alike(op):
    x = _frames()
    allowed = set(x.unique().tolist()) | {0.0}
    changed = 0
    for seed in range(12):
        y = _only(op, seed, flip_p=0.5)(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert set(y.unique().tolist()) <= allowed  # nearest resampling, zero fill: no new values
        assert all(torch.equal(y[t], y[0]) for t in range(1, len(y)))
        changed += not torch.equal(y, x)
    assert changed >= 6  # small shears and rotations may not move any pixel of a 24 px frame


def test_flip_really_flips_the_width_axis():
    x = _frames()
    assert torch.equal(_only("roll", 0, flip_p=1.0, max_roll=0)(x), x.flip(-1))
    assert torch.equal(_only("roll", 0, flip_p=0.0, max_roll=0)(x), x)
    flips = sum(torch.equal(_only("roll", s, flip_p=0.5, max_roll=0)(x), x.flip(-1)) for s in range(200))
    assert 70 < flips < 130


def test_roll_is_a_circular_shift_within_5_px():
    x = _frames()
    for seed in range(10):
        y = _only("roll", seed)(x)
        shifts = [(dy, dx) for dy in range(-5, 6) for dx in range(-5, 6)
                  if torch.equal(y, torch.roll(x, (dy, dx), dims=(-2, -1)))]
        assert shifts


@pytest.mark.parametrize("op,limit,reference", [
    ("rotate", 15, lambda x, a: F1.rotate(x, a, interpolation=InterpolationMode.NEAREST, fill=0)),
    ("shear", 8, lambda x, a: F1.affine(x, angle=0, translate=[0, 0], scale=1.0, shear=[a, 0], fill=0)),
])
def test_rotation_and_shear_use_whole_degrees_within_the_limit(op, limit, reference):
    x = _frames()
    seen = set()
    for seed in range(15):
        y = _only(op, seed)(x)
        matches = [a for a in range(-limit, limit + 1) if torch.equal(y, reference(x, a))]
        assert matches, f"{op} with seed {seed} matches no whole angle in ±{limit}"
        seen.add(matches[0])
    assert len(seen) > 5


def test_cutout_zeroes_one_square_of_at_most_8_px():
    x = torch.ones(2, 2, 20, 20)
    for seed in range(20):
        zero = _only("cutout", seed)(x)[0, 0] == 0
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        side = len(rows)
        assert 1 <= side <= 8 and len(cols) == side and int(zero.sum()) == side * side
        assert rows[-1] - rows[0] == side - 1 and cols[-1] - cols[0] == side - 1


def test_seeded_generator_makes_it_deterministic():
    x = _frames(size=32)
    run = [EventAugment(generator=torch.Generator().manual_seed(7))(x) for _ in range(2)]
    assert torch.equal(run[0], run[1])
    aug = EventAugment(generator=torch.Generator().manual_seed(7))
    outputs = [aug(x) for _ in range(8)]
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:])


def test_policies_by_name():
    assert isinstance(build_augment("reference"), EventAugment) and build_augment("none") is None
    with pytest.raises(UserError, match="unknown augmentation policy 'strong'.*reference, none"):
        build_augment("strong")
    with pytest.raises(UserError, match="non-empty subset"):
        EventAugment(ops=("blur",))
    with pytest.raises(ValueError, match=r"\[T, C, H, W\].*\(2, 24, 24\)"):
        EventAugment()(_frames()[0])
