"""dcign_eval.traverse: calibration, sweeps, movies, re-rendering fidelity, SSIM and the CLI.

Behaviour (monotone sweeps, calibrated degrees, fidelity) is tested on a deterministic stand-in
model whose decoder renders faces through known monotone maps and whose encoder looks images up
in a bank of renders: a perfect inverse-graphics network, so every expectation is exact. A tiny
DC-IGN trained for a few dozen steps in the test checks the plumbing end to end (load_model, the
CLI, the files), where only "frames differ along the sweep" can honestly be asked of it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from dcign_eval import imaging
from dcign_eval import traverse as tv
from trainer.errors import DcignError
from trainer.faces import TEST_IDENTITY_OFFSET, render_faces
from trainer.faces.world import factor_values

OFFSET = TEST_IDENTITY_OFFSET
SPEC = tv.CalibrationSpec(n_identities=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- a stand-in model that satisfies the loader's contract -----------------------------------------

def to_latents(f: pd.DataFrame) -> np.ndarray:
    """The stand-in's true code of a face: (azimuth, elevation, light, identity) through monotone
    maps; elevation decreasing, light non-linear."""
    return np.stack([f["azimuth"] / 30, -f["elevation"] / 10,
                     2 * np.arctanh(f["light"] / 85), f["identity"] - OFFSET], -1).astype(float)


def light_of(z):
    return 85 * np.tanh(np.asarray(z) / 2)


class StandIn:
    """decode(z) renders the face z names; encode(x) returns the code of the nearest bank render.

    ``order[k]`` is where factor k (azimuth, elevation, light, identity) sits in z; ``named``
    False makes it a baseline without named latents.
    """

    image_size = 64

    def __init__(self, bank: pd.DataFrame, order=(0, 1, 2, 3), named=True, fingerprint=None):
        self.order = list(order)
        self.latent_names = ({k: self.order[i] for i, k in enumerate(tv.NAMED)} if named else {})
        self.fingerprint = fingerprint
        self.encode_calls = 0
        images = render_faces(bank["identity"].to_numpy(), bank["azimuth"].to_numpy(),
                              bank["elevation"].to_numpy(), bank["light"].to_numpy(), size=64)
        self.bank = images.reshape(len(images), -1).astype(np.float64) / 255
        codes = to_latents(bank)
        self.codes = np.empty_like(codes)
        self.codes[:, self.order] = codes

    def clone(self, fingerprint: str) -> "StandIn":
        """The same model under another fingerprint (no re-rendering of the bank)."""
        other = copy.copy(self)
        other.fingerprint, other.encode_calls = fingerprint, 0
        return other

    def encode(self, images):
        self.encode_calls += 1
        x = np.asarray(images)
        x = (x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)).reshape(len(x), -1)
        d = (x ** 2).sum(1)[:, None] - 2 * x @ self.bank.T + (self.bank ** 2).sum(1)[None]
        return self.codes[np.argmin(d, axis=1)].astype(np.float32)

    def decode(self, z):
        c = np.asarray(z, np.float64)[:, self.order]
        images = render_faces(np.round(c[:, 3]).astype(np.int64) + OFFSET,
                              np.clip(30 * c[:, 0], -90, 90), np.clip(-10 * c[:, 1], -30, 30),
                              np.clip(light_of(c[:, 2]), -80, 80), size=64)
        return images.astype(np.float32) / 255


def sweeps(ids, steps=(10, 5, 10)) -> pd.DataFrame:
    frames = []
    for name, step in zip(tv.NAMED, steps):
        values = factor_values(name, step)
        cols = {k: np.zeros(len(ids) * len(values)) for k in tv.NAMED}
        cols[name] = np.tile(values, len(ids))
        frames.append(pd.DataFrame({"identity": np.repeat(ids, len(values)), **cols}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="session")
def bank() -> pd.DataFrame:
    fidelity_ids = np.arange(tv.FIDELITY_FIRST_IDENTITY, tv.FIDELITY_FIRST_IDENTITY + 2)
    return pd.concat([tv.calibration_factors(SPEC).drop(columns="sweep"), sweeps(fidelity_ids)],
                     ignore_index=True)


@pytest.fixture(scope="session")
def standin(bank) -> StandIn:
    return StandIn(bank)


@pytest.fixture(scope="session")
def calibration(standin) -> tv.Calibration:
    return tv.calibrate(standin, SPEC, cache=False)


def centroid_x(images: np.ndarray) -> np.ndarray:
    """Horizontal brightness centroid of (N, H, W) images, in pixels."""
    x = np.arange(images.shape[-1]) + 0.5
    return (images.sum(-2) * x).sum(-1) / images.sum((-2, -1))


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg
    return msg


# -- SSIM ------------------------------------------------------------------------------------------

def test_ssim_known_values():
    rng = np.random.default_rng(0)
    a = rng.random((3, 32, 32))
    np.testing.assert_allclose(imaging.ssim(a, a), 1.0, atol=1e-12)
    # Constant images: the structure term is (C2)/(C2) = 1, the luminance term is exact.
    c1 = 0.01 ** 2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
    assert imaging.ssim(np.full((20, 20), 0.2), np.full((20, 20), 0.6)) == pytest.approx(expected)
    assert imaging.ssim(np.full((20, 20), 51), np.full((20, 20), 153), data_range=255) \
        == pytest.approx(expected)
    noisy = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    noisier = np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1)
    s1, s2 = imaging.ssim(a, noisy), imaging.ssim(a, noisier)
    assert np.all(s2 < s1) and np.all(s1 < 1)
    np.testing.assert_allclose(imaging.ssim(noisy, a), s1)
    with pytest.raises(DcignError) as e:
        imaging.ssim(a, a[:, :16])
    assert "same shape" in one_line(e)


# -- calibration -----------------------------------------------------------------------------------

def test_calibration_recovers_the_known_maps(calibration):
    az, el, li = (calibration.factors[k] for k in tv.NAMED)
    assert (az.latent, el.latent, li.latent) == (0, 1, 2)
    assert az.increasing and not el.increasing and li.increasing  # chosen by the Spearman sign
    assert az.named and el.spearman == pytest.approx(-1)
    np.testing.assert_allclose(az.values, az.degrees / 30, atol=1e-9)
    np.testing.assert_allclose(el.values, -el.degrees / 10, atol=1e-9)
    np.testing.assert_allclose(li.values, 2 * np.arctanh(li.degrees / 85), atol=1e-9)
    for fmap in (az, el, li):
        deg = np.linspace(fmap.degrees[0], fmap.degrees[-1], 17)
        np.testing.assert_allclose(fmap.to_degrees(fmap.to_latent(deg)), deg, atol=1e-6)
    # The default sweep range is the latents' percentile range over the calibration grid.
    assert calibration.latent_dim == 4
    assert calibration.low[2] < -3 and calibration.high[2] > 3
    assert calibration.low[0] == pytest.approx(-3, abs=0.05)


def test_calibration_codes_come_from_the_one_cache(standin, tmp_path):
    model = standin.clone("weights-a")
    first = tv.calibrate(model, SPEC, cache_dir=tmp_path)
    calls = model.encode_calls
    assert calls > 1 and len(list((tmp_path / "codes").rglob("*.npy"))) == 1
    again = tv.calibrate(model, SPEC, cache_dir=tmp_path)
    assert model.encode_calls == calls + 1  # the protocol's probe batch; the grid from disk
    np.testing.assert_array_equal(again.high, first.high)
    np.testing.assert_array_equal(again.factors["light"].values, first.factors["light"].values)
    other = standin.clone("weights-b")  # another fingerprint: its own entry
    tv.calibrate(other, SPEC, cache_dir=tmp_path)
    assert other.encode_calls == calls and len(list((tmp_path / "codes").iterdir())) == 2
    for path in (tmp_path / "codes").rglob("*.npy"):  # a damaged entry is encoded again
        path.write_bytes(b"not an array")
    tv.calibrate(model, SPEC, cache_dir=tmp_path)
    assert model.encode_calls == 2 * calls + 1
    assert not list((tmp_path / "codes").rglob(".*.tmp"))


# -- sweeps ----------------------------------------------------------------------------------------

def test_light_sweep_moves_the_light_one_way(standin, calibration):
    [neuron] = tv.resolve_neuron(standin, "light", calibration)
    values, degrees = tv.sweep_values(calibration, neuron, frames=9)
    assert values[0] == pytest.approx(calibration.low[2]) and values[-1] > values[0]
    sources = tv.face_sources(OFFSET, n_faces=2)
    t = tv.traverse(standin, tv.render_sources(sources, 64), neuron, values, degrees, sources)
    assert t.decoded.shape == (2, 9, 64, 64) and t.truth.shape == (2, 9, 64, 64)
    steps = np.abs(np.diff(t.decoded, axis=1)).mean(axis=(2, 3))
    assert (steps > 1e-3).all()  # frames differ along the sweep
    cx = centroid_x(t.decoded)
    assert (np.diff(cx, axis=1) > 0).all()  # the light moves one way: to the image's right
    # Side by side: the calibrated angle of each frame is the light the decoder rendered.
    np.testing.assert_allclose(degrees, np.clip(light_of(values), -80, 80), atol=2.0)
    assert np.abs(t.decoded - t.truth).mean() < 0.01


def test_sweep_in_degrees_lands_on_the_true_renders(standin, calibration):
    [neuron] = tv.resolve_neuron(standin, "azimuth", calibration)
    values, degrees = tv.sweep_values(calibration, neuron, 7, degree_range=(-60, 60))
    np.testing.assert_allclose(degrees, np.linspace(-60, 60, 7))
    np.testing.assert_allclose(values, degrees / 30, atol=1e-9)
    sources = tv.face_sources(OFFSET + 1, light=30)
    t = tv.traverse(standin, tv.render_sources(sources, 64), neuron, values, degrees, sources)
    np.testing.assert_allclose(t.decoded, t.truth, atol=1 / 255 + 1e-6)
    # Read the azimuth off each decoded frame (the nearest render of the source face on a 5-degree
    # grid): it increases monotonically along the sweep.
    grid = factor_values("azimuth", 5)
    refs = tv.render_sources(sources, 64, "azimuth", grid)[0].astype(float) / 255
    d = ((t.decoded[0][:, None] - refs[None]) ** 2).mean(axis=(2, 3))
    read = grid[np.argmin(d, axis=1)]
    assert (np.diff(read) > 0).all(), read
    np.testing.assert_allclose(read, degrees)


def test_index_neuron_and_value_range(standin, calibration):
    [n2] = tv.resolve_neuron(standin, 2, calibration)
    assert n2.factor == "light" and n2.label == "light"
    [n3] = tv.resolve_neuron(standin, "3", calibration)
    assert n3.factor is None and n3.label == "latent-3"
    values, degrees = tv.sweep_values(calibration, n3, 5, value_range=(-1, 1))
    np.testing.assert_allclose(values, np.linspace(-1, 1, 5))
    assert degrees is None
    assert [n.index for n in tv.resolve_neuron(standin, "all", calibration)] == [0, 1, 2]


def test_baseline_takes_the_most_correlated_latent(bank):
    baseline = StandIn(bank, order=(2, 3, 1, 0), named=False)  # light sits at latent 1
    cal = tv.calibrate(baseline, SPEC, cache=False)
    [light] = tv.resolve_neuron(baseline, "light", cal)
    assert light.index == 1 and light.factor == "light"
    assert "no light neuron" in light.note and "latent 1" in light.note
    assert "most correlated" in light.note
    assert [n.index for n in tv.resolve_neuron(baseline, "all", cal)] == [2, 3, 1]
    assert not cal.factors["elevation"].increasing
    values, degrees = tv.sweep_values(cal, light, 5, degree_range=(-40, 40))
    np.testing.assert_allclose(degrees, np.linspace(-40, 40, 5))


def test_bad_input_is_one_line(standin, calibration, tmp_path):
    with pytest.raises(DcignError) as e:
        tv.parse_neuron("colour")
    assert "azimuth, elevation, light" in one_line(e)
    with pytest.raises(DcignError) as e:
        tv.resolve_neuron(standin, 4, calibration)
    assert "out of range" in one_line(e) and "0..3" in str(e.value)
    [n3] = tv.resolve_neuron(standin, 3, calibration)
    with pytest.raises(DcignError) as e:
        tv.sweep_values(calibration, n3, 5, degree_range=(-10, 10))
    assert "named neuron" in one_line(e)
    [az] = tv.resolve_neuron(standin, "elevation", calibration)
    with pytest.raises(DcignError) as e:
        tv.sweep_values(calibration, az, 5, degree_range=(-60, 60))
    assert "out of range" in one_line(e)
    with pytest.raises(DcignError) as e:
        tv.sweep_values(calibration, az, 1)
    assert "frames" in one_line(e)
    with pytest.raises(DcignError) as e:
        tv.traverse(standin, np.zeros((1, 32, 32), np.uint8), az, [0, 1])
    assert "64x64" in one_line(e)
    garbage = tmp_path / "face.png"
    garbage.write_bytes(b"this is no picture")
    for path in (garbage, tmp_path / "missing.jpg"):
        with pytest.raises(DcignError) as e:
            tv.load_image(path, 64)
        assert str(path) in one_line(e)


def test_load_image_converts_and_resizes(tmp_path):
    from PIL import Image
    rgb = np.zeros((90, 120, 3), np.uint8)
    rgb[:, 60:, 0] = 255
    Image.fromarray(rgb).save(tmp_path / "face.jpg")
    img = tv.load_image(tmp_path / "face.jpg", 64)
    assert img.shape == (64, 64) and img.dtype == np.uint8
    assert img[:, :20].mean() < 10 < img[:, -20:].mean()  # centre crop keeps left/right order


# -- movies ----------------------------------------------------------------------------------------

def test_movies_read_back(standin, calibration, tmp_path):
    results = tv.traverse_to_files(standin, "light", out_dir=tmp_path, stem="standin", faces=3,
                                   frames=7, fps=10, calibration=calibration)
    [r] = results
    assert set(r.paths) == {"gif", "mp4", "png"}
    gif = iio.imread(r.paths["gif"], index=None)
    assert gif.shape[0] == 7
    h, w = gif.shape[1:3]
    assert h % 16 == 0 and w % 16 == 0
    assert w > 2 * 2 * 64 * 3  # two columns of faces, each decoded beside its true render
    reader = iio2.get_reader(r.paths["mp4"], format="FFMPEG")
    mp4 = np.stack([frame for frame in reader])  # len(reader) is inf: no list()
    reader.close()
    assert mp4.shape[:3] == (7, h, w)
    assert np.abs(mp4[..., 0].astype(int) - gif[..., 0]).mean() < 12  # same pictures, lossy
    sheet = iio.imread(r.paths["png"])
    assert sheet.ndim == 2 and sheet.shape[0] > 3 * 2 * 64
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporaries


def test_movie_from_an_image_file(standin, calibration, tmp_path):
    from PIL import Image
    face = render_faces([OFFSET], [20.0], [0.0], [-30.0], size=100)[0]
    Image.fromarray(face).save(tmp_path / "face.png")
    [r] = tv.traverse_to_files(standin, 0, out_dir=tmp_path / "out", stem="img",
                               image=tmp_path / "face.png", frames=4, calibration=calibration)
    assert r.paths["gif"].name == "img-azimuth.gif" and r.degrees is not None
    assert iio.imread(r.paths["gif"], index=None).shape[0] == 4
    with pytest.raises(DcignError) as e:
        tv.traverse_to_files(standin, 0, out_dir=tmp_path, image=tmp_path / "face.png", faces=2,
                             calibration=calibration)
    assert "--faces" in one_line(e)



# -- the report's sliders: sweeps lined up on the same angles, one PNG a frame ---------------------

def test_angle_sweeps_line_models_up_frame_by_frame(bank, standin, calibration, tmp_path):
    # A second model keeps azimuth at another latent and names none: its calibration differs.
    other = StandIn(bank, order=(3, 2, 0, 1), named=False)
    other_calibration = tv.calibrate(other, SPEC, cache=False)
    sources = tv.face_sources(OFFSET, light=30, n_faces=2)  # both in the encoder's bank
    images = tv.render_sources(sources, 64)
    sweeps = []
    for model, cal in ((standin, calibration), (other, other_calibration)):
        [neuron] = tv.resolve_neuron(model, "azimuth", cal)
        values, degrees = tv.angle_sweep(cal, "azimuth", 7)
        np.testing.assert_allclose(degrees, np.linspace(-90, 90, 7))
        sweeps.append(tv.traverse(model, images, neuron, values, degrees, sources))
    a, b = sweeps
    assert (a.neuron.index, b.neuron.index) == (0, 3)
    np.testing.assert_array_equal(a.truth, b.truth)
    # Both are perfect inverse-graphics networks: frame k of each decodes the same angle.
    np.testing.assert_allclose(a.decoded, a.truth, atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(b.decoded, a.truth, atol=1 / 255 + 1e-6)

    # A latent that does not follow its factor is swept at its one value, not refused.
    flat = copy.deepcopy(calibration)
    flat.factors["light"] = tv.FactorMap("light", 2, np.array([-80.0, 80.0]),
                                         np.array([0.5, 0.5]), True, 0.0, True)
    values, degrees = tv.angle_sweep(flat, "light", 4)
    assert values.tolist() == [0.5] * 4
    np.testing.assert_allclose(degrees, [-80, -80 / 3, 80 / 3, 80])
    for bad in (("colour", 4), ("light", 1)):
        with pytest.raises(DcignError):
            tv.angle_sweep(calibration, *bad)


def test_face_frames_are_the_sweep_and_read_back_as_pngs(standin, calibration, tmp_path):
    [neuron] = tv.resolve_neuron(standin, "light", calibration)
    values, degrees = tv.angle_sweep(calibration, "light", 5)
    sources = tv.face_sources(OFFSET, n_faces=2)
    t = tv.traverse(standin, tv.render_sources(sources, 64), neuron, values, degrees, sources)
    faces = tv.face_frames(t)
    # one row of two faces, each decoded | 2-pixel gap | true render; nothing else
    assert faces.shape == (5, 64, 2 * (64 + 2 + 64) + 2) and faces.dtype == np.uint8
    truth = tv.render_sources(sources, 64, "light", degrees)
    np.testing.assert_array_equal(faces[:, :, 66:130], truth[0])
    np.testing.assert_array_equal(faces[:, :, 132 + 66:], truth[1])
    paths = tv.write_frames(tmp_path / "frames", faces)
    assert [p.name for p in paths] == ["000.png", "001.png", "002.png", "003.png", "004.png"]
    for path, frame in zip(paths, faces):
        np.testing.assert_array_equal(iio.imread(path), frame)
    assert not list((tmp_path / "frames").glob(".*"))  # atomic writes leave no temporaries
    with pytest.raises(DcignError, match="uint8"):
        tv.write_frames(tmp_path / "bad", faces / 255.0)

# -- re-rendering fidelity -------------------------------------------------------------------------

def test_fidelity_frame_and_plot(standin, calibration, tmp_path):
    frame = tv.rerender_fidelity(standin, calibration, ("azimuth", "light"),
                                 model_name="standin", n_identities=2)
    assert list(frame.columns) == list(tv.FIDELITY_COLUMNS)
    assert len(frame) == 19 + 17 and (frame["n"] == 2).all()
    assert set(frame["neuron"]) == {"azimuth", "light"}
    # A perfect inverse-graphics model re-renders as well as it reconstructs.
    assert frame["mse"].max() < 1e-4 and frame["ssim"].min() > 0.99
    assert frame["recon_mse"].max() < 1e-6
    paths = tv.write_fidelity(frame, tmp_path, "standin")
    assert set(paths) == {"csv", "azimuth", "light"}
    back = pd.read_csv(paths["csv"])
    assert len(back) == len(frame) and list(back.columns) == list(tv.FIDELITY_COLUMNS)
    assert iio.imread(paths["light"]).ndim == 3
    fig = tv.plot_fidelity(frame)
    assert len(fig.axes) == 4
    with pytest.raises(DcignError):
        tv.fidelity_factors(standin, 3)
    faces = tv.rerender_fidelity(standin, calibration, ("light",), model_name="standin",
                                 n_identities=2, by_identity=True)
    assert len(faces) == 17 * 2 and faces["identity"].nunique() == 2
    pd.testing.assert_frame_equal(tv.fidelity_by_target(faces),
                                  frame[frame["neuron"] == "light"].reset_index(drop=True))


def test_fidelity_summary_intervals_over_identities():
    from dcign_eval.intervals import difference_verdict

    rng = np.random.default_rng(0)
    ids, targets = np.arange(12), np.array([-30.0, 0.0, 30.0])
    base = pd.DataFrame([{"model": "a", "neuron": "azimuth", "latent": 0, "source": 0.0,
                          "target": t, "identity": i, "n": 1} for i in ids for t in targets])
    base["mse"] = rng.uniform(0.01, 0.03, len(base))
    base["recon_mse"] = base["mse"] / 2
    base["ssim"], base["recon_ssim"] = 1 - 10 * base["mse"], 1 - 10 * base["recon_mse"]
    worse = base.assign(model="worse", mse=base["mse"] + 0.005, ssim=base["ssim"] - 0.05)
    frame = pd.concat([base, base.assign(model="same"), worse], ignore_index=True)
    summary = tv.fidelity_summary(frame, resamples=300, random_state=2)
    pd.testing.assert_frame_equal(summary, tv.fidelity_summary(frame, 300, 2))
    s = summary.set_index("model")
    assert list(summary["model"]) == ["a", "same", "worse"] and (s["identities"] == 12).all()
    assert s.loc["a", "mse"] == pytest.approx(base["mse"].mean())
    for score in tv.FIDELITY_SCORES:
        assert ((s[f"{score}_low"] <= s[score]) & (s[score] <= s[f"{score}_high"])).all()
    verdict = {m: difference_verdict(s.loc[m, "mse_difference_low"],
                                     s.loc[m, "mse_difference_high"], "lower")
               for m in ("same", "worse")}
    assert verdict == {"same": "not significant", "worse": "significant: higher (worse)"}
    assert difference_verdict(s.loc["worse", "recon_mse_difference_low"],
                              s.loc["worse", "recon_mse_difference_high"]) == "not significant"
    with pytest.raises(DcignError, match="one row per identity"):
        tv.fidelity_summary(tv.fidelity_by_target(frame))


# -- a real tiny DC-IGN, end to end through the CLI ------------------------------------------------

@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    from trainer.faces import MonovariantSpec, render_monovariant
    from trainer.config import TrainConfig
    from trainer.train import train

    root = tmp_path_factory.mktemp("tiny")
    spec = MonovariantSpec(batches_per_type={"train": 3, "test": 1},
                           identities={"train": 20, "test": 20}, step=10)
    render_monovariant(root / "mono", spec, size=64)
    train(TrainConfig(data=str(root / "mono"), out=str(root / "run"), steps=30, width=0.125,
                      latent_dim=12, lr=2e-3, val_every=0, checkpoint_every=30, quiet=True,
                      verify_data=False))
    return root / "run"


def test_cli_traverse_on_a_trained_model(tiny_run, tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("DCIGN_EVAL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "movies"
    code, stdout, _ = run_cli(["traverse", "--model", tiny_run, "--neuron", "all", "--frames", 5,
                               "--faces", 2, "--out", out, "--fidelity",
                               "--fidelity-identities", 2])
    assert code == 0
    for name in tv.NAMED:
        for ext in ("gif", "mp4", "png"):
            path = out / f"run-{name}.{ext}"
            assert path.is_file() and str(path) in stdout
        assert (out / f"run-fidelity-{name}.png").is_file()
    frame = pd.read_csv(out / "run-fidelity.csv")
    assert set(frame["neuron"]) == set(tv.NAMED) and frame[["mse", "ssim"]].notna().all().all()
    assert iio.imread(out / "run-light.gif", index=None).shape[0] == 5
    assert len(list((tmp_path / "cache" / "codes").iterdir())) == 1  # one model, one entry dir

    # Plumbing of the real model: its decoded frames change along the light sweep.
    from dcign_eval import load_model
    model = load_model(tiny_run)
    cal = tv.calibrate(model, cache_dir=tmp_path / "cache")
    [light] = tv.resolve_neuron(model, "light", cal)
    assert light.index == 2
    values, degrees = tv.sweep_values(cal, light, 6)
    sources = tv.face_sources()
    t = tv.traverse(model, tv.render_sources(sources, 64), light, values, degrees, sources)
    assert (np.abs(np.diff(t.decoded, axis=1)).mean(axis=(2, 3)) > 1e-6).all()


def test_cli_errors_are_one_line(tiny_run, tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("DCIGN_EVAL_CACHE", str(tmp_path / "cache"))
    garbage = tmp_path / "x.png"
    garbage.write_text("not an image")
    cases = [(["--neuron", "colour"], "unknown neuron"),
             (["--model", tmp_path / "nowhere"], "no model"),
             (["--neuron", "99"], "out of range"),
             (["--image", garbage], "cannot read"),
             (["--from", "-60"], "--from and --to"),
             (["--neuron", "elevation", "--from", "-60", "--to", "60"], "out of range")]
    for args, expected in cases:
        argv = ["traverse", "--out", tmp_path / "o", *args]
        if "--model" not in args:
            argv += ["--model", tiny_run]
        code, stdout, stderr = run_cli(argv)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, stderr)
        assert expected in lines[0], (args, lines[0])
    assert not (tmp_path / "o").exists()


def test_load_image_reads_every_pixel_format(tmp_path):
    """16-bit is scaled to 8 bits (not clipped to white); transparency is composited on black."""
    from PIL import Image
    ramp = np.tile(np.linspace(0, 1, 64), (64, 1))
    expected = np.rint(ramp * 255)

    def check(img, name, tol=1):
        img.save(tmp_path / name)
        got = tv.load_image(tmp_path / name, 64).astype(float)
        assert np.abs(got - expected).max() <= tol, (name, np.abs(got - expected).max())

    check(Image.fromarray(np.rint(ramp * 65535).astype(np.uint16)), "gray16.png")
    check(Image.fromarray(np.rint(ramp * 255).astype(np.uint8)).convert("P"), "palette.png")
    rgb = np.repeat(np.rint(ramp * 255).astype(np.uint8)[..., None], 3, axis=2)
    check(Image.fromarray(rgb).convert("CMYK"), "cmyk.tiff", tol=2)
    check(Image.fromarray(ramp.astype(np.float32), "F"), "float.tiff")
    # transparent pixels become the renders' black background, whatever their colour
    alpha = np.where(np.arange(64) < 32, 0, 255).astype(np.uint8)[None].repeat(64, 0)
    white = np.full((64, 64), 255, np.uint8)
    for mode, planes in (("LA", [white, alpha]), ("RGBA", [white, white, white, alpha])):
        Image.fromarray(np.stack(planes, -1), mode).save(tmp_path / f"{mode}.png")
        got = tv.load_image(tmp_path / f"{mode}.png", 64)
        assert (got[:, :32] == 0).all() and (got[:, 32:] == 255).all(), mode
    pal = Image.fromarray(np.where(np.arange(64) < 32, 0, 1).astype(np.uint8)[None].repeat(64, 0),
                          "P")
    pal.putpalette([255, 255, 255, 200, 200, 200])
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal-alpha.png", transparency=0)
    got = tv.load_image(tmp_path / "pal-alpha.png", 64)
    assert (got[:, :32] == 0).all() and (got[:, 32:] == 200).all()
    # what cannot be read as a face is refused in one line
    Image.fromarray(np.full((64, 64), -5.0, np.float32), "F").save(tmp_path / "neg.tiff")
    with pytest.raises(DcignError) as e:
        tv.load_image(tmp_path / "neg.tiff", 64)
    assert "outside the 8- or 16-bit range" in one_line(e)
