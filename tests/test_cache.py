"""The one cache of encoded codes: keyed by the model's fingerprint and the images, atomic, safe
with two commands at once; and the coded grid the metrics sample from."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dcign_eval import cache
from dcign_eval.protocol import Model


class Counting:
    """Codes: each image's mean and max, scaled; counts the images it encodes."""

    image_size = 8

    def __init__(self, scale: float = 1.0):
        self.scale, self.encoded = scale, 0

    def encode(self, images):
        self.encoded += len(images)
        x = np.asarray(images, np.float32)
        return np.stack([x.mean((1, 2)), x.max((1, 2))], 1) * self.scale


def images(n: int = 600, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8), dtype=np.uint8)


def test_codes_are_encoded_once_per_model_and_images(tmp_path):
    counting = Counting()
    model = Model(counting)
    counting.encoded = 0  # the probe batch
    x = images()
    first = cache.encode_cached(model, x, cache_dir=tmp_path)
    assert counting.encoded == 600 and first.dtype == np.float32 and first.shape == (600, 2)
    again = cache.encode_cached(model, x, cache_dir=tmp_path)
    assert counting.encoded == 600  # read back, nothing encoded
    np.testing.assert_array_equal(again, first)
    cache.encode_cached(model, x[:10], cache_dir=tmp_path)  # other images: another entry
    assert counting.encoded == 610
    other = Model(Counting(2.0))  # other codes: another fingerprint, another entry
    np.testing.assert_allclose(cache.encode_cached(other, x, cache_dir=tmp_path), 2 * first)
    entries = sorted(tmp_path.glob("codes/*/*.npy"))
    assert len(entries) == 3 and len({p.parent for p in entries}) == 2
    assert cache.entry_path(model, x, tmp_path) in entries
    for path in entries:  # a damaged entry is encoded again, and rewritten whole
        path.write_bytes(b"\x93NUMPY garbage")
    counting.encoded = 0
    np.testing.assert_array_equal(cache.encode_cached(model, x, cache_dir=tmp_path), first)
    assert counting.encoded == 600
    assert not list(tmp_path.rglob("*.tmp"))
    counting.encoded = 0
    cache.encode_cached(model, x, cache_dir=tmp_path, cache=False)  # no cache: encodes afresh
    assert counting.encoded == 600


def test_the_default_place_is_the_environments(tmp_path, monkeypatch):
    monkeypatch.setenv("DCIGN_EVAL_CACHE", str(tmp_path / "elsewhere"))
    model = Model(Counting())
    cache.encode_cached(model, images(4))
    assert len(list((tmp_path / "elsewhere" / "codes").rglob("*.npy"))) == 1


WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from dcign_eval import cache
    from dcign_eval.protocol import Model

    class Slow:
        image_size = 8
        def encode(self, images):
            time.sleep(0.2)
            x = np.asarray(images, np.float32)
            return np.stack([x.mean((1, 2)), x.max((1, 2))], 1)

    x = np.random.default_rng(0).integers(0, 256, (1500, 8, 8), dtype=np.uint8)
    codes = cache.encode_cached(Model(Slow()), x, cache_dir=sys.argv[1])
    np.save(sys.argv[2], codes)
""")


def test_two_commands_at_once_leave_one_whole_entry(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "cache"),
                               str(tmp_path / f"out{i}.npy")]) for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    [entry] = (tmp_path / "cache").glob("codes/*/*.npy")
    stored = np.load(entry)
    for i in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"out{i}.npy"), stored)
    assert stored.shape == (1500, 2) and not list((tmp_path / "cache").rglob("*.tmp"))


def test_a_coded_grid_returns_the_codes_of_grid_points():
    from trainer.faces import FaceWorld, GridSpec

    class Grid(FaceWorld):  # a grid without images: the codes stand in for them
        pass

    world = Grid(GridSpec.make("test", 2, 90, 30, 80))
    codes = np.arange(int(np.prod(world.factor_sizes)) * 2, dtype=float).reshape(-1, 2)
    grid = cache.CodedGrid(world, codes)
    assert grid.factor_sizes == world.factor_sizes
    factors = grid.sample_factors(7, np.random.default_rng(0))
    np.testing.assert_array_equal(grid.sample_observations_from_factors(factors),
                                  codes[world.flat_index(factors)])
    with pytest.raises(ValueError):
        grid.sample_observations_from_factors(np.full((1, 4), 99))
