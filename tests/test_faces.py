"""The face world: renderer conventions, determinism, data sets on disk, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from trainer.errors import DatasetError, DcignError
from trainer.faces import (BATCH_TYPES, FaceWorld, GridSpec, MonovariantSpec, load_dataset,
                           load_monovariant, render_faces, render_grid, render_monovariant)
from trainer.faces.world import TEST_IDENTITY_OFFSET, factor_values


def render(identity=0, azimuth=0.0, elevation=0.0, light=0.0, size=64):
    return render_faces([identity], [azimuth], [elevation], [light], size=size)[0].astype(float)


def centroid(img, axis):
    """Intensity-weighted mean coordinate along axis (1 = x, 0 = y)."""
    w = img.sum(axis=1 - axis)
    return (w * np.arange(len(w))).sum() / w.sum()


def test_shapes_sizes_and_dtype():
    for size in (64, 150):
        imgs = render_faces([0, 1], [0, 30], [0, -10], [0, 40], size=size)
        assert imgs.shape == (2, size, size) and imgs.dtype == np.uint8
    assert render_faces([], [], [], []).shape == (0, 64, 64)


def test_deterministic_bytes():
    rng = np.random.default_rng(1)
    args = (rng.integers(0, 50, 16), rng.uniform(-90, 90, 16), rng.uniform(-30, 30, 16),
            rng.uniform(-80, 80, 16))
    a, b = render_faces(*args), render_faces(*args)
    assert a.tobytes() == b.tobytes()
    # An image does not depend on what else is in the batch.
    single = render_faces(*(x[3:4] for x in args))
    assert single[0].tobytes() == a[3].tobytes()


def test_face_centred_and_filling_frame():
    for az in (-90, -45, 0, 45, 90):
        for el in (-30, 0, 30):
            img = render(azimuth=az, elevation=el)
            mask = img > 0
            assert 0.35 < mask.mean() < 0.9, (az, el, mask.mean())
            ys, xs = np.nonzero(mask)
            assert abs(xs.mean() - 31.5) < 8 and abs(ys.mean() - 31.5) < 8
    corners = render()[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 0).all()  # black background


@pytest.fixture
def nose_marker(monkeypatch):
    """Render with only the nose tip painted white, and return a function giving the (x, y)
    image position of the nose for a pose: a direct view of where the face points."""
    import dataclasses

    import trainer.faces.render as render_module
    from trainer.faces.head import load_head

    head = load_head()
    nose = head.vertices[:, 2] > head.vertices[:, 2].max() - 0.08
    marked = dataclasses.replace(head, albedo=np.where(nose, 1.0, 0.05).astype(np.float32))
    monkeypatch.setattr(render_module, "load_head", lambda: marked)

    def position(azimuth=0.0, elevation=0.0):
        img = render(azimuth=azimuth, elevation=elevation)
        ys, xs = np.nonzero(img > 0.5 * img.max())
        return xs.mean(), ys.mean()
    return position


def test_azimuth_turns_face_towards_positive_x(nose_marker):
    xs = [nose_marker(azimuth=a)[0] for a in (-80, -40, 0, 40, 80)]
    assert np.all(np.diff(xs) > 1), xs
    assert abs(xs[2] - 32) < 2  # frontal: the nose is on the centre line


def test_elevation_tilts_face_up(nose_marker):
    ys = [nose_marker(elevation=e)[1] for e in (-30, -15, 0, 15, 30)]
    assert np.all(np.diff(ys) < -0.5), ys  # image rows count downwards


def test_lit_side_follows_light():
    diffs = []
    for light in (-80, -40, 0, 40, 80):
        img = render(light=light)
        diffs.append(img[:, 32:].sum() - img[:, :32].sum())  # right minus left
    assert diffs == sorted(diffs)
    assert diffs[0] < 0 < diffs[-1]


def test_identity_changes_face_not_pose():
    a, b = render(identity=0), render(identity=1)
    assert np.abs(a - b).mean() > 2.0
    # Different identities at the same pose still overlap a lot (same framing).
    ma, mb = a > 0, b > 0
    assert (ma & mb).sum() / (ma | mb).sum() > 0.8


@pytest.mark.parametrize("kwargs, message", [
    (dict(azimuth=[95]), "azimuth 95 is out of range"),
    (dict(elevation=[-31]), "elevation -31 is out of range"),
    (dict(light=[np.nan]), "light nan is out of range"),
    (dict(identity=[-1]), "identity must be >= 0"),
    (dict(identity=[0.5]), "identity must be integers"),
    (dict(light=[0, 0]), "light has 2 values"),
])
def test_render_rejects_bad_factors(kwargs, message):
    args = dict(identity=[0], azimuth=[0], elevation=[0], light=[0]) | kwargs
    with pytest.raises(DcignError, match=message):
        render_faces(**args)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_render_rejects_bad_size(size):
    with pytest.raises(DcignError, match="size"):
        render_faces([0], [0], [0], [0], size=size)


def test_factor_values_grid():
    assert factor_values("azimuth", 5).tolist() == list(np.arange(-90, 91, 5.0))
    assert factor_values("light", 20).tolist() == [-80, -60, -40, -20, 0, 20, 40, 60, 80]
    with pytest.raises(DcignError, match="unknown factor 'pose'"):
        factor_values("pose", 5)
    with pytest.raises(DcignError, match="step must be > 0"):
        factor_values("azimuth", 0)


def test_grid_complete_reused_and_interface(tmp_path):
    spec = GridSpec.make("test", 2, azimuth_step=45, elevation_step=30, light_step=80)
    ds = render_grid(tmp_path / "g", spec)
    assert spec.factor_sizes == [2, 5, 3, 3]
    assert len(ds) == 2 * 5 * 3 * 3
    combos = ds.factors[["identity", "azimuth", "elevation", "light"]].drop_duplicates()
    assert len(combos) == len(ds)  # every combination exactly once
    assert (ds.factors["identity"] >= TEST_IDENTITY_OFFSET).all()
    mtime = (tmp_path / "g" / "images.npy").stat().st_mtime_ns
    again = render_grid(tmp_path / "g", spec)  # same arguments: reused, not re-rendered
    assert (tmp_path / "g" / "images.npy").stat().st_mtime_ns == mtime
    assert again.checksum == ds.checksum
    with pytest.raises(DatasetError, match="other parameters"):
        render_grid(tmp_path / "g", GridSpec.make("test", 3, 45, 30, 80))

    world = FaceWorld.from_dataset(ds)
    rng = np.random.default_rng(0)
    factors = world.sample_factors(7, rng)
    assert factors.shape == (7, 4) and (factors < np.array(world.factor_sizes)).all()
    from_disk = world.sample_observations_from_factors(factors, rng)
    rendered = FaceWorld(spec).sample_observations_from_factors(factors, rng)
    assert np.array_equal(from_disk, rendered)
    values = spec.factors_of(factors)
    direct = render_faces(*(values[c].to_numpy() for c in values.columns))
    assert np.array_equal(direct, from_disk)


def test_grid_fixed_factor():
    spec = GridSpec.make("test", 1, 30, 30, 20, fixed={"light": 0})
    assert spec.light.tolist() == [0.0]
    with pytest.raises(DcignError, match="unknown factor 'shape'"):
        GridSpec.make(fixed={"shape": 1})
    with pytest.raises(DcignError, match="out of range"):
        GridSpec.make(fixed={"azimuth": 120})


def small_monovariant(tmp_path, seed=0):
    spec = MonovariantSpec(batches_per_type={"train": 3, "test": 2},
                           identities={"train": 25, "test": 20}, seed=seed)
    return render_monovariant(tmp_path / "mv", spec, size=32), spec


def test_monovariant_batches_vary_one_factor(tmp_path):
    sets, spec = small_monovariant(tmp_path)
    for split, ds in sets.items():
        batches = ds.batches()
        assert list(batches) == list(BATCH_TYPES)
        for btype, rows in batches.items():
            assert rows.shape == (spec.batches_per_type[split], 20)
            for batch in rows:
                f = ds.factors.iloc[batch]
                varying = [c for c in ("identity", "azimuth", "elevation", "light")
                           if f[c].nunique() > 1]
                expected = {"AZ_VARIED": "azimuth", "EL_VARIED": "elevation",
                            "LIGHT_VARIED": "light", "SHAPE_VARIED": "identity"}[btype]
                assert varying == [expected]
        # The stored pixels are the renders of the stored factors.
        f = ds.factors.iloc[:5]
        again = render_faces(f.identity, f.azimuth, f.elevation, f.light, size=32)
        assert np.array_equal(again, ds.images[:5])
    train_ids = set(sets["train"].factors.identity)
    test_ids = set(sets["test"].factors.identity)
    assert not train_ids & test_ids
    loaded = load_monovariant(tmp_path / "mv")
    assert loaded["train"].checksum == sets["train"].checksum


def test_monovariant_deterministic_in_seed(tmp_path):
    a, _ = small_monovariant(tmp_path / "a", seed=3)
    b, _ = small_monovariant(tmp_path / "b", seed=3)
    c, _ = small_monovariant(tmp_path / "c", seed=4)
    assert a["train"].manifest["files"] == b["train"].manifest["files"]
    assert not a["train"].factors.equals(c["train"].factors)


def test_corrupt_and_partial_sets_are_detected(tmp_path):
    spec = GridSpec.make("test", 1, 90, 30, 80)
    path = tmp_path / "g"
    render_grid(path, spec)
    images = path / "images.npy"
    data = bytearray(images.read_bytes())
    data[-10] ^= 0xFF
    images.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="corrupt"):
        load_dataset(path)
    images.write_bytes(bytes(data[:-100]))
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="corrupt"):
        load_dataset(path)
    (path / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="not a complete data set"):
        load_dataset(path)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(DatasetError, match="not a dcign-eval face data set"):
        load_dataset(tmp_path / "foreign")
    with pytest.raises(DatasetError, match="directory not found"):
        load_dataset(tmp_path / "missing")


def test_killed_render_leaves_nothing_loadable(tmp_path, monkeypatch):
    import trainer.faces.world as world

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(world, "render_faces", boom)
    with pytest.raises(KeyboardInterrupt):
        render_grid(tmp_path / "g", GridSpec.make("test", 1, 90, 30, 80))
    assert not (tmp_path / "g").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary directory is gone too


def run_cli_process(*args):
    """``python -m dcign_eval.cli ARGS`` as a real process."""
    return subprocess.run([sys.executable, "-m", "dcign_eval.cli", *args],
                          capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["render", "grid", "--fix", "shape=2"], "unknown factor 'shape'"),
    (["render", "grid", "--fix", "azimuth=100"], "azimuth 100 is out of range"),
    (["render", "grid", "--size", "0"], "--size must be in"),
    (["render", "grid", "--azimuth-step", "-5"], "azimuth step must be > 0"),
    (["render", "grid", "--out", "/proc/forbidden/g", "--identities", "1"], "cannot write"),
    (["render", "monovariant", "--test-identities", "5"], "test-identities"),
])
def test_cli_bad_arguments_one_line_nonzero(args, message, tmp_path, run_cli):
    # in-process (conftest's run_cli): any exception but the CLI's own exit fails the test there
    if "--out" not in args:
        args = args + ["--out", str(tmp_path / "d")]
    code, out, err = run_cli(args)
    assert code != 0
    assert message in err
    errors = [l for l in err.splitlines() if "error" in l.lower() or "Error" in l]
    assert len(errors) >= 1 and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_cli_grid_and_preview(tmp_path):
    out, png = tmp_path / "g", tmp_path / "sheet.png"
    r = run_cli_process("render", "grid", "--out", str(out), "--identities", "2",
                        "--azimuth-step", "90", "--elevation-step", "30", "--light-step", "80",
                        "--preview", str(png))
    assert r.returncode == 0, r.stderr
    assert "54 images" in r.stdout
    import imageio.v3 as iio
    sheet = iio.imread(png)
    assert sheet.ndim == 2 and sheet.shape[0] == 2 * 64
    assert load_dataset(out).kind == "grid"


def test_two_renders_into_one_folder(tmp_path, hold_lock):
    holder = hold_lock(tmp_path / "mv")
    try:
        with pytest.raises(DcignError) as e:
            small_monovariant(tmp_path)
        assert str(e.value) == (f"{tmp_path / 'mv'} is being written by another process "
                                f"(pid {holder.pid})")
        assert not (tmp_path / "mv").exists()
    finally:
        holder.kill()  # killed while holding it: the next render takes the lock over
        holder.wait()
    (tmp_path / "mv").mkdir()
    leftover = tmp_path / "mv" / ".train.k9x2.partial"  # a render killed half-way
    leftover.mkdir()
    (leftover / "images.npy").write_bytes(b"half")
    sets, _ = small_monovariant(tmp_path)
    assert not leftover.exists() and len(sets["train"]) == 4 * 3 * 20
    assert sorted(p.name for p in (tmp_path / "mv").iterdir()) == ["test", "train"]


def test_the_same_grid_rendered_twice_at_once_is_rendered_once(tmp_path):
    """Analyses render their evaluation grid on first use: a second one waits, then reuses it."""
    script = ("import sys; from trainer.faces import GridSpec, render_grid; "
              "render_grid(sys.argv[1], GridSpec.make('test', 2, 45, 30, 80), size=32, wait=True)"
              "; print('done')")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "g")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "done", err
    assert len(load_dataset(tmp_path / "g")) == 2 * 5 * 3 * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]
