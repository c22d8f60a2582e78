"""The training loop, run directories and the loader, on a tiny synthetic face set (CPU)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.train as train_mod
from dcign_eval import load_model
from trainer.__main__ import main as trainer_main
from trainer.checkpoint import load_checkpoint, read_lineage
from trainer.config import SHAPE_OPTIONS, TrainConfig
from trainer.errors import CheckpointError, DatasetError, DcignError
from trainer.faces.datasets import BATCH_TYPES
from trainer.train import NonFiniteLoss, train

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(mono64) -> Path:
    return mono64


def tiny(data, out, **kw) -> TrainConfig:
    cfg = dict(data=str(data), out=str(out), steps=4, width=0.125, checkpoint_every=2,
               val_every=2, val_batches=2, quiet=True, verify_data=False)
    cfg.update(kw)
    return TrainConfig(**cfg)


def one_line_error(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg
    return msg


def train_rows(history):
    return [(h["step"], h["batch_type"], h["neg_elbo"]) for h in history if h["split"] == "train"]


@pytest.mark.parametrize("mode", ["monovariant", "vae"])
def test_a_few_steps_lower_the_loss(data, tmp_path, mode):
    result = train(tiny(data, tmp_path / "run", steps=16, lr=2e-3, mode=mode, val_every=0))
    losses = [h["neg_elbo"] for h in result.history if h["split"] == "train"]
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    assert load_checkpoint(tmp_path / "run").step == 16


def test_resume_is_exact(data, tmp_path):
    full = train(tiny(data, tmp_path / "full", steps=6, checkpoint_every=3, val_every=3))
    half = train(tiny(data, tmp_path / "half", steps=3, checkpoint_every=3, val_every=3))
    assert half.step == 3
    resumed = train(tiny(data, tmp_path / "half", steps=6, checkpoint_every=3, val_every=3,
                         resume=True))
    assert resumed.step == 6
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert train_rows(full.history) == train_rows(resumed.history)
    a, b = (load_checkpoint(tmp_path / r, training_state=True) for r in ("full", "half"))
    for sa, sb in zip(a.optimizer["state"].values(), b.optimizer["state"].values()):
        torch.testing.assert_close(sa["exp_avg_sq"], sb["exp_avg_sq"], rtol=0, atol=1e-9)
    vals = [h for h in b.history if h["split"] == "test"]
    assert [v["step"] for v in vals] == [3, 6]


def test_relative_invariance_resumes_exactly(data, tmp_path):
    kw = dict(invariance_scale="relative", invariance_strength=1.0, checkpoint_every=3,
              val_every=0, ratio=(1.0, 1.0, 1.0, 1.0))  # pose batches too, early
    full = train(tiny(data, tmp_path / "full", steps=6, **kw))
    train(tiny(data, tmp_path / "half", steps=3, **kw))
    resumed = train(tiny(data, tmp_path / "half", steps=6, resume=True, **kw))
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    spread = load_checkpoint(tmp_path / "half", training_state=True).rng["invariance_spread"]
    assert spread["active_count"][:3].sum() + spread["active_count"][3] == 6  # one group per step
    # the absolute pull's run differs: the option is not a no-op
    absolute = train(tiny(data, tmp_path / "abs", steps=6,
                          **{**kw, "invariance_scale": "absolute"}))
    assert not all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(),
                                                     absolute.model.state_dict().values()))
    # split: absolute on the named latents, relative on the rest; it resumes exactly too
    kw = {**kw, "invariance_scale": "split"}
    split = train(tiny(data, tmp_path / "split", steps=6, **kw))
    train(tiny(data, tmp_path / "split-half", steps=3, **kw))
    resumed = train(tiny(data, tmp_path / "split-half", steps=6, resume=True, **kw))
    for (k, a), b in zip(split.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for other in (full, absolute):
        assert not all(torch.equal(a, b) for a, b in zip(split.model.state_dict().values(),
                                                         other.model.state_dict().values()))
    # the intrinsic block's own strength: as strong as the named ones' is the same run
    kw = {**kw, "invariance_scale": "relative"}
    same = train(tiny(data, tmp_path / "same", steps=6, intrinsic_strength=1.0, **kw))
    stronger = train(tiny(data, tmp_path / "stronger", steps=6, intrinsic_strength=10.0, **kw))
    for (k, a), b in zip(full.model.state_dict().items(), same.model.state_dict().values()):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), k
    assert not all(torch.allclose(a, b) for a, b in zip(full.model.state_dict().values(),
                                                        stronger.model.state_dict().values()))
    with pytest.raises(DcignError) as e:
        train(tiny(data, tmp_path / "bad", invariance_scale="scale-free"))
    assert "invariance_scale" in one_line_error(e)


def test_resume_keeps_its_settings(data, tmp_path):
    train(tiny(data, tmp_path / "run", steps=2))
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "run", steps=4, lr=1e-3, resume=True))
    assert "lr" in one_line_error(e)
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "run", steps=4))  # without --resume
    assert "--resume" in one_line_error(e)


def test_cosine_schedule_by_hand_and_in_the_optimizer(data, tmp_path, monkeypatch):
    cfg = tiny(data, tmp_path / "run", steps=4, lr=1e-3, lr_schedule="cosine", val_every=0)
    expected = [1e-3, 1e-3 * (1 + 2 ** -0.5) / 2, 0.5e-3, 1e-3 * (1 - 2 ** -0.5) / 2]
    assert [train_mod.learning_rate(cfg, s) for s in range(4)] == pytest.approx(expected)
    assert train_mod.learning_rate(tiny(data, tmp_path, lr=1e-3), 3) == 1e-3  # constant
    used = []
    step = torch.optim.Adam.step

    def spy(self, *a, **kw):
        used.append(self.param_groups[0]["lr"])
        return step(self, *a, **kw)
    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    train(cfg)
    assert used == pytest.approx(expected)
    with pytest.raises(DcignError) as e:
        train(tiny(data, tmp_path / "bad", lr_schedule="linear"))
    assert "lr_schedule" in one_line_error(e)


def test_cosine_resumes_exactly_and_keeps_its_length(data, tmp_path, monkeypatch):
    kw = dict(lr_schedule="cosine", steps=6, checkpoint_every=6, val_every=0, lr=2e-3)
    full = train(tiny(data, tmp_path / "full", **kw))
    calls = []
    forward_backward = train_mod.forward_backward

    def interrupt_at_step_3(*a, **k):  # as a SIGTERM would: finish the step, save, stop
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return forward_backward(*a, **k)
    with monkeypatch.context() as m:
        m.setattr(train_mod, "forward_backward", interrupt_at_step_3)
        half = train(tiny(data, tmp_path / "half", **kw))
    assert (half.step, half.status) == (3, "interrupted")
    resumed = train(tiny(data, tmp_path / "half", resume=True, **kw))
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    constant = train(tiny(data, tmp_path / "constant", **{**kw, "lr_schedule": "constant"}))
    assert train_rows(constant.history) != train_rows(full.history)  # not a no-op
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "full", **{**kw, "steps": 9}, resume=True))
    assert "steps" in one_line_error(e)


def test_cli_resume_takes_saved_settings(data, tmp_path):
    out = tmp_path / "run"
    assert trainer_main(["--data", str(data), "--out", str(out), "--steps", "2", "--width",
                         "0.125", "--quiet", "--no-verify-data", "--lr", "1e-3"]) == 0
    assert trainer_main(["--out", str(out), "--resume", "--steps", "3"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.step == 3 and ckpt.config["train"]["lr"] == 1e-3


def test_init_from_a_baseline(data, tmp_path):
    base = train(tiny(data, tmp_path / "vae", mode="vae", steps=2))
    assert base.model.config.latent_names == {}
    mono = train(tiny(data, tmp_path / "mono", steps=1, lr=1e-12, init_from=str(tmp_path / "vae")))
    assert mono.model.config.latent_names == {"azimuth": 0, "elevation": 1, "light": 2}
    for a, b in zip(base.model.parameters(), mono.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "mono2", width=0.25, init_from=str(tmp_path / "vae")))
    assert "encoder_channels" in one_line_error(e)
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "mono3", code_width=1, init_from=str(tmp_path / "vae")))
    assert "code_channels" in one_line_error(e)


@pytest.mark.parametrize("how", ["spread", "order"])
def test_named_latents_from_the_pretrained_code(data, tmp_path, how):
    base = train(tiny(data, tmp_path / "vae", mode="vae", steps=2))
    mono = train(tiny(data, tmp_path / "mono", steps=1, lr=1e-12, named_latents=how,
                      init_from=str(tmp_path / "vae")))
    picked = load_checkpoint(tmp_path / "mono").config["latent_layout"]["pretrained_latents"]
    assert list(picked) == ["azimuth", "elevation", "light"] and len(set(picked.values())) == 3
    # the named latents are the picked ones of the pretraining, renumbered, nothing else changed
    for name, slot in mono.model.config.latent_names.items():
        torch.testing.assert_close(mono.model.mu.weight[slot], base.model.mu.weight[picked[name]],
                                   rtol=0, atol=1e-9)
        torch.testing.assert_close(mono.model.decoder_in.weight[:, slot],
                                   base.model.decoder_in.weight[:, picked[name]], rtol=0, atol=1e-9)
    torch.testing.assert_close(mono.model.encoder[0].weight, base.model.encoder[0].weight,
                               rtol=0, atol=1e-9)
    # resumed, it keeps the record and does not renumber again
    again = train(tiny(data, tmp_path / "mono", steps=2, lr=1e-12, named_latents=how,
                       init_from=str(tmp_path / "vae"), resume=True))
    assert load_checkpoint(tmp_path / "mono").config["latent_layout"]["pretrained_latents"] \
        == picked
    torch.testing.assert_close(again.model.mu.weight, mono.model.mu.weight, rtol=0, atol=1e-6)
    with pytest.raises(DcignError) as e:
        train(tiny(data, tmp_path / "m2", named_latents=how))
    assert "--init-from" in one_line_error(e)
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "m3", steps=1, named_latents=how,
                   init_from=str(tmp_path / "mono")))
    assert "already names" in one_line_error(e)


def test_freeze_encoder_trains_the_decoder_alone(data, tmp_path):
    mono = train(tiny(data, tmp_path / "mono", steps=2))
    dec = train(tiny(data, tmp_path / "dec", mode="vae", steps=3, lr=1e-2, freeze_encoder=True,
                     init_from=str(tmp_path / "mono")))
    # the latents keep their names although random (vae-mode) batches were drawn
    assert dec.model.config.latent_names == {"azimuth": 0, "elevation": 1, "light": 2}
    before, after = mono.model.state_dict(), dec.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("decoder", "decoder_in")) for k in moved), moved
    assert not any(k.startswith(("encoder", "mu.", "logvar.")) for k in moved)
    # a resume keeps it frozen, and may not unfreeze it
    assert train(tiny(data, tmp_path / "dec", mode="vae", steps=4, lr=1e-2, freeze_encoder=True,
                      resume=True)).step == 4
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "dec", mode="vae", steps=5, lr=1e-2, resume=True))
    assert "freeze_encoder" in one_line_error(e)
    with pytest.raises(DcignError) as e:
        train(tiny(data, tmp_path / "fresh", freeze_encoder=True))
    assert "--init-from" in one_line_error(e)

    # a decoder of another width starts afresh under the frozen encoder; the encoder must fit
    wide = train(tiny(data, tmp_path / "wide", mode="vae", steps=1, freeze_encoder=True,
                      decoder_width=0.25, init_from=str(tmp_path / "mono")))
    assert wide.model.decoder[1].out_channels == 12 and wide.model.config.decoder_width == 0.25
    for k, v in wide.model.state_dict().items():
        if k.startswith(("encoder", "mu.", "logvar.")):
            torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert train(tiny(data, tmp_path / "wide", mode="vae", steps=2, freeze_encoder=True,
                      decoder_width=0.25, resume=True)).step == 2
    # or widened from the old one: the same reconstructions, before any step
    widened = train(tiny(data, tmp_path / "widened", mode="vae", steps=0, freeze_encoder=True,
                         decoder_width=0.25, widen_decoder=True, init_from=str(tmp_path / "mono")))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a = widened.model.decode(widened.model.encode(x)[0])
        b = mono.model.decode(mono.model.encode(x)[0])
    torch.testing.assert_close(a, b, rtol=0, atol=0.02)
    with pytest.raises(DcignError) as e:
        train(tiny(data, tmp_path / "widen0", widen_decoder=True))
    assert "--init-from" in one_line_error(e)
    with pytest.raises(DcignError) as e:  # nothing to widen: an error, not a silent no-op
        train(tiny(data, tmp_path / "widen1", mode="vae", freeze_encoder=True, widen_decoder=True,
                   init_from=str(tmp_path / "mono")))
    assert "already has this shape" in one_line_error(e)
    with pytest.raises(CheckpointError) as e:  # without the freeze, the decoder must fit
        train(tiny(data, tmp_path / "wide2", decoder_width=0.25, init_from=str(tmp_path / "mono")))
    assert "decoder_channels" in one_line_error(e)
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "wide3", freeze_encoder=True, width=0.25, decoder_width=0.125,
                   init_from=str(tmp_path / "mono")))
    assert "encoder_channels" in one_line_error(e)


def test_unclamped_share_mixes_in_unclamped_batches(data, tmp_path):
    def types(run):
        return [h["batch_type"] for h in run.history if h["split"] == "train"]

    plain = types(train(tiny(data, tmp_path / "plain", steps=12, val_every=0)))
    half = types(train(tiny(data, tmp_path / "half", steps=12, val_every=0, unclamped_share=0.5)))
    every = types(train(tiny(data, tmp_path / "all", steps=3, val_every=0, unclamped_share=1)))
    assert "MIXED" not in plain and every == ["MIXED"] * 3
    assert 0 < half.count("MIXED") < 12 and set(half) - {"MIXED"} <= set(BATCH_TYPES)
    with pytest.raises(DcignError) as e:
        train(tiny(data, tmp_path / "vae", mode="vae", unclamped_share=0.5))
    assert "unclamped_share" in one_line_error(e)
    with pytest.raises(CheckpointError) as e:  # a resume keeps it
        train(tiny(data, tmp_path / "half", steps=13, resume=True))
    assert "unclamped_share" in one_line_error(e)


def test_removed_options_read_from_old_configs_only_when_they_changed_nothing(data, tmp_path):
    old = {**TrainConfig().to_dict(), "decoder_noise": 1.0, "decoder_hidden": 0,
           "clamp_reference": "mean"}
    assert TrainConfig.from_dict(old) == TrainConfig()
    for key, value in (("decoder_noise", 0.0), ("decoder_hidden", 96),
                       ("clamp_reference", "first")):
        with pytest.raises(DcignError) as e:
            TrainConfig.from_dict({**old, key: value}, "config.json")
        assert f"config.json sets {key} = {value!r}; that option was removed" in \
            one_line_error(e)
    with pytest.raises(DcignError) as e:
        trainer_main(["--decoder-noise", "0"])
    assert "--decoder-noise" in one_line_error(e)


def test_nan_loss_stops_and_keeps_the_last_checkpoint(data, tmp_path, monkeypatch):
    real, calls = train_mod.neg_elbo, {"n": 0}

    def poisoned(*args):
        calls["n"] += 1
        nelbo, bce, kl = real(*args)
        return (nelbo * np.nan, bce * np.nan, kl) if calls["n"] == 5 else (nelbo, bce, kl)

    monkeypatch.setattr(train_mod, "neg_elbo", poisoned)
    with pytest.raises(NonFiniteLoss) as e:
        train(tiny(data, tmp_path / "run", steps=8, val_every=0))
    msg = one_line_error(e)
    assert "nan" in msg and "step 5" in msg and "step 4" in msg
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == 4 and all(torch.isfinite(w).all() for w in ckpt.weights.values())


def test_sigterm_writes_a_final_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainer", "--data", str(data), "--out", str(out),
           "--steps", "100000", "--width", "0.125", "--checkpoint-every", "100000",
           "--val-every", "1", "--val-batches", "1", "--no-verify-data"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        assert proc.stderr.readline().startswith("step 1/")  # training has started
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err
    ckpt = load_checkpoint(out)
    assert ckpt.state["status"] == "interrupted" and ckpt.step >= 1


# -- one-line errors -------------------------------------------------------------------------------

def test_missing_data_set(tmp_path):
    with pytest.raises(DatasetError) as e:
        train(tiny(tmp_path / "nowhere", tmp_path / "run"))
    assert "no data directory" in one_line_error(e)
    (tmp_path / "half").mkdir()
    with pytest.raises(DatasetError) as e:
        train(tiny(tmp_path / "half", tmp_path / "run"))
    assert "train" in one_line_error(e)


def test_data_of_the_wrong_image_size(data, tmp_path, make_monovariant_data):
    odd = make_monovariant_data(tmp_path / "mono40", size=40, batches_per_type=1)
    with pytest.raises(DcignError) as e:
        train(tiny(odd, tmp_path / "run"))
    assert "40" in one_line_error(e)
    mixed = make_monovariant_data(tmp_path / "mixed", size=64, batches_per_type=1, test_size=48)
    with pytest.raises(DatasetError) as e:
        train(tiny(mixed, tmp_path / "run"))
    assert "48x48" in one_line_error(e)
    train(tiny(data, tmp_path / "run64", steps=1))
    other = make_monovariant_data(tmp_path / "mono48", size=48, batches_per_type=1)
    with pytest.raises(CheckpointError) as e:
        train(tiny(other, tmp_path / "run64", steps=2, resume=True))
    one_line_error(e)
    model = load_model(tmp_path / "run64")
    with pytest.raises(DcignError) as e:
        model.encode(np.zeros((2, 48, 48), np.uint8))
    assert "64x64" in one_line_error(e) and "48x48" in str(e.value)


def test_corrupt_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    train(tiny(data, out, steps=1))
    weights = out / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[100:140] = b"\xff" * 40
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as e:
        load_model(out)
    assert "corrupt" in one_line_error(e)
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(out, verify=False)  # the format check alone catches it too
    assert "corrupt" in one_line_error(e)
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as e:
        load_model(out)
    assert "config.json" in one_line_error(e)


def test_not_a_checkpoint(data, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(256))
    for path in (junk, tmp_path, tmp_path / "missing"):
        with pytest.raises(DcignError) as e:
            load_model(path)
        one_line_error(e)
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, tmp_path / "run", init_from=str(junk)))
    assert "not a run directory" in one_line_error(e)


def test_options_a_mode_ignores_are_errors(data, tmp_path):
    for key, value in (("invariance_strength", 100.0), ("intrinsic_strength", 10.0),
                       ("ratio", (1.0, 1.0, 1.0, 1.0)),
                       ("invariance_scale", "relative")):
        with pytest.raises(DcignError) as e:
            train(tiny(data, tmp_path / "vae", mode="vae", **{key: value}))
        assert f"{key} means nothing in vae mode" in one_line_error(e)
    assert not (tmp_path / "vae").exists()
    # their defaults are not "set": a vae run's config holds them
    train(tiny(data, tmp_path / "vae", mode="vae", steps=1, invariance_strength=0.01))


def test_kl_weight_and_the_deprecated_beta(data, tmp_path, capsys, monkeypatch):
    a = trainer_main(["--data", str(data), "--out", str(tmp_path / "a"), "--steps", "2",
                      "--width", "0.125", "--quiet", "--no-verify-data", "--beta", "0.5"])
    assert a == 0 and "--beta is deprecated; use --kl-weight" in capsys.readouterr().err
    assert json.loads((tmp_path / "a" / "config.json").read_text())["train"]["kl_weight"] == 0.5
    with pytest.raises(DcignError) as e:
        trainer_main(["--beta", "0.5", "--kl-weight", "0.5"])
    assert "both 'beta' and its new name 'kl_weight'" in one_line_error(e)
    # a run saved before the rename (its config says "beta") resumes with its KL weight
    real = TrainConfig.to_dict

    def old_names(self):
        d = real(self)
        d["beta"] = d.pop("kl_weight")
        return d
    monkeypatch.setattr(TrainConfig, "to_dict", old_names)
    train(tiny(data, tmp_path / "old", steps=2, kl_weight=0.5))
    monkeypatch.setattr(TrainConfig, "to_dict", real)
    assert "beta" in json.loads((tmp_path / "old" / "config.json").read_text())["train"]
    assert trainer_main(["--out", str(tmp_path / "old"), "--resume", "--steps", "3"]) == 0
    assert load_checkpoint(tmp_path / "old").config["train"]["kl_weight"] == 0.5
    # the shipped models' configs read with the KL weight they were saved with
    from dcign_eval.models import SHIPPED_DIR
    for name in ("dcign", "vae"):
        train_cfg = json.loads((SHIPPED_DIR / name / "config.json").read_text())["train"]
        assert TrainConfig.from_dict(train_cfg).kl_weight == train_cfg["kl_weight"]


def test_the_shape_is_saved_once_as_the_model_config(data, tmp_path):
    cfg = tiny(data, tmp_path / "run", steps=1, code_width=0.25)
    train(cfg)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert not set(SHAPE_OPTIONS) & set(config["train"])
    assert (config["model"]["width"], config["model"]["code_width"]) == (0.125, 0.25)
    assert TrainConfig.from_run_config(config) == cfg
    assert trainer_main(["--out", str(tmp_path / "run"), "--resume", "--steps", "2"]) == 0
    # a config saved with a copy of the shape among its options still reads, the model's winning
    legacy = json.loads(json.dumps(config))
    legacy["train"].update({k: getattr(cfg, k) for k in SHAPE_OPTIONS}, width=1.0)
    assert TrainConfig.from_run_config(legacy) == cfg


def test_batches_per_step_feeds_several_batches_a_step(data, tmp_path):
    result = train(tiny(data, tmp_path / "grouped", steps=2, batches_per_step=3, val_every=0))
    assert [h["batch_type"] for h in result.history] == ["3 BATCHES"] * 2
    assert read_lineage(tmp_path / "grouped").images == 2 * 3 * 20
    one = train(tiny(data, tmp_path / "one", steps=2, val_every=0))
    assert [h["batch_type"] for h in one.history][0] in BATCH_TYPES
    with pytest.raises(CheckpointError) as e:  # a resume keeps it
        train(tiny(data, tmp_path / "grouped", steps=3, resume=True))
    assert "batches_per_step" in one_line_error(e)


def test_unknown_config_keys(data, tmp_path):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"steps": 2, "learning_rate": 0.1}))
    with pytest.raises(DcignError) as e:
        trainer_main(["--config", str(cfg_file), "--data", str(data), "--out", str(tmp_path)])
    assert "'learning_rate'" in one_line_error(e)
    with pytest.raises(DcignError) as e:
        trainer_main(["--learning-rate", "0.1"])
    assert "--learning-rate" in one_line_error(e)
    out = tmp_path / "run"
    train(tiny(data, out, steps=1))
    config = json.loads((out / "config.json").read_text())
    config["model"]["depth"] = 3
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        load_model(out)
    assert "'depth'" in one_line_error(e)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"lrr": 0.1}))
    proc = subprocess.run([sys.executable, "-m", "trainer", "--config", str(cfg_file)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    # any other bad input reaches that same line as one DcignError (no new interpreter needed)
    with pytest.raises(DcignError) as e:
        trainer_main(["--data", str(tmp_path / "no"), "--out", str(tmp_path / "x")])
    assert "no data directory" in one_line_error(e)
    assert not (tmp_path / "x").exists()


def test_dcign_eval_train_forwards_to_the_trainer(data, tmp_path):
    from typer.testing import CliRunner

    from dcign_eval.cli import app
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(out), "--steps",
                                      "1", "--width", "0.125", "--quiet", "--no-verify-data"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).step == 1


# -- the loader ------------------------------------------------------------------------------------

def test_load_model(data, tmp_path):
    out = tmp_path / "run"
    train(tiny(data, out, steps=2))
    model = load_model(out)
    assert model.latent_names == {"azimuth": 0, "elevation": 1, "light": 2}
    assert model.image_size == 64
    images = np.load(data / "test" / "images.npy")[:5]
    mu = model.encode(images)
    assert mu.shape == (5, 200) and mu.dtype == np.float32
    np.testing.assert_allclose(model.encode(images / 255.0), mu, atol=1e-5)
    np.testing.assert_allclose(model.encode(images[:, None]), mu, atol=1e-6)
    decoded = model.decode(mu)
    assert decoded.shape == (5, 64, 64) and 0 <= decoded.min() and decoded.max() <= 1
    with pytest.raises(DcignError) as e:
        model.encode(images.astype(np.float32))
    assert "[0, 1]" in one_line_error(e)
    vae = tmp_path / "vae"
    train(tiny(data, vae, steps=1, mode="vae"))
    assert load_model(vae / "model.safetensors").latent_names == {}


def test_shipped_names(tmp_path):
    from dcign_eval.models import SHIPPED_DIR
    for name in ("dcign", "vae"):
        if not (SHIPPED_DIR / name / "model.safetensors").exists():
            with pytest.raises(DcignError) as e:
                load_model(name)
            assert "not installed" in one_line_error(e)
        else:  # the shipped reference models: 64x64, DC-IGN with named latents, VAE without
            model = load_model(name)
            assert model.image_size == 64
            assert bool(model.latent_names) == (name == "dcign")
    with pytest.raises(DcignError) as e:
        load_model("gan")
    assert "'gan'" in one_line_error(e)


# -- outputs that cannot be written, and two processes on one run ----------------------------------

def test_out_that_is_a_file_fails_before_any_step(data, tmp_path, monkeypatch):
    steps = []
    real = train_mod.forward_backward
    monkeypatch.setattr(train_mod, "forward_backward", lambda *a: steps.append(1) or real(*a))
    somefile = tmp_path / "somefile"
    somefile.write_text("x")
    with pytest.raises(DcignError) as e:
        train(tiny(data, somefile, steps=3))
    assert "is a file" in one_line_error(e)
    with pytest.raises(DcignError) as e:  # a folder that cannot be created
        train(tiny(data, somefile / "run", steps=3))
    assert "cannot write" in one_line_error(e)
    assert steps == [] and somefile.read_text() == "x"


def test_out_on_a_read_only_file_system_fails_before_any_step(data, tmp_path, monkeypatch):
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(train_mod, "forward_backward", lambda *a: pytest.fail("a step ran"))
    with pytest.raises(DcignError) as e:
        train(tiny(data, tmp_path / "run", steps=3))
    assert "read-only file system" in one_line_error(e)


def test_a_second_train_into_the_same_run_is_refused(data, tmp_path):
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--width", "0.125", "--quiet",
            "--no-verify-data", "--val-every", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, "-m", "trainer", *args, "--steps", "100000",
                              "--checkpoint-every", "5"], cwd=ROOT, env=env,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "state.json").exists():  # it holds the lock and has written once
            assert first.poll() is None and time.time() < deadline, first.stderr.read()
            time.sleep(0.2)
        # the second train runs here, in this process: the lock is an flock, held against every
        # process but the trainer's own (the CLI's error line: test_cli_prints_one_line...)
        with pytest.raises(DcignError) as e:
            trainer_main([*args, "--steps", "3"])
        assert one_line_error(e) == f"{out} is being written by another process (pid {first.pid})"
        with pytest.raises(DcignError) as e:
            trainer_main(["--out", str(out), "--resume"])
        assert "another process" in one_line_error(e)
        assert first.poll() is None  # refused while the first was still training
    finally:
        first.send_signal(signal.SIGKILL)  # no chance to tidy up: a stale lock stays
        first.wait()
    assert (tmp_path / ".run.lock").exists()
    (out / ".checkpoint-left-by-a-kill.tmp").mkdir()  # as if killed while writing
    result = train(tiny(data, out, steps=load_checkpoint(out).step + 1, resume=True,
                        checkpoint_every=5, val_every=0))
    assert result.status == "finished"
    assert not (out / ".checkpoint-left-by-a-kill.tmp").exists()
    assert not (tmp_path / ".run.lock").exists()


def test_steps_zero_writes_the_initial_weights(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert trainer_main(["--data", str(data), "--out", str(out), "--steps", "0", "--width",
                         "0.125", "--no-verify-data"]) == 0
    assert f"run directory {out}" in capsys.readouterr().err
    assert load_checkpoint(out).step == 0 and load_checkpoint(out).state["status"] == "finished"
    torch.manual_seed(0)
    fresh = train_mod.DCIGN(load_checkpoint(out).model_config)
    assert all(torch.equal(v, load_model(out).model.state_dict()[k])
               for k, v in fresh.state_dict().items())


def test_resume_to_a_step_already_passed_says_so(data, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny(data, out, steps=4, checkpoint_every=2))
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, out, steps=3, resume=True))
    assert one_line_error(e) == (f"{out} is at step 4 (finished); --steps 3 would train "
                                 f"nothing: pass --steps above 4")
    before = (out / "state.json").read_text()
    assert trainer_main(["--out", str(out), "--resume", "--steps", "4"]) == 0
    assert f"{out} already finished at step 4; nothing to train" in capsys.readouterr().err
    assert (out / "state.json").read_text() == before


def test_an_unfinished_run_resumed_to_its_own_step_is_refused(data, tmp_path):
    out = tmp_path / "run"
    train(tiny(data, out, steps=2, checkpoint_every=2))
    rehash_state(out, status="running")  # as a run killed right after this checkpoint leaves it
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, out, steps=2, resume=True))
    assert "is at step 2 (running)" in one_line_error(e)


def rehash_state(out: Path, **changes) -> None:
    state = json.loads((out / "state.json").read_text())
    state.update(changes)
    (out / "state.json").write_text(json.dumps(state))


def test_config_values_of_the_wrong_type(data, tmp_path):
    out = tmp_path / "run"
    train(tiny(data, out, steps=1))
    good = (out / "config.json").read_text()
    cases = [("model", "width", "abc", "model.width must be a finite number, got 'abc'"),
             ("model", "latent_dim", 2.5, "model.latent_dim must be an integer, got 2.5"),
             ("model", "latent_names", [0], "model.latent_names must be an object, got [0]"),
             ("train", "lr", "fast", "train.lr must be a finite number, got 'fast'"),
             ("train", "freeze_encoder", "no", "train.freeze_encoder must be true or false, got 'no'"),
             ("data", "image_size", "64", "data.image_size must be an integer, got '64'")]
    for section, key, value, expected in cases:
        config = json.loads(good)
        config[section][key] = value
        (out / "config.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(out, verify=False)
        assert one_line_error(e) == f"{out / 'config.json'}: {expected}"
    config = json.loads(good)
    config["model"]["latent_names"] = {"azimuth": "0", "elevation": 1, "light": 2}
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="latent_names.azimuth must be a latent index"):
        load_checkpoint(out, verify=False)
    # the command line and --config files are held to the same types
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"steps": "many"}))
    with pytest.raises(DcignError) as e:
        trainer_main(["--config", str(cfg_file), "--data", str(data), "--out", str(tmp_path / "b")])
    assert "steps must be an integer, got 'many'" in one_line_error(e)


def test_a_pickled_object_is_refused_as_not_ours(data, tmp_path):
    import hashlib
    import io

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))
    out = tmp_path / "run"
    train(tiny(data, out, steps=1))
    buf = io.BytesIO()
    torch.save({"state": Payload()}, buf)
    (out / "optimizer.pt").write_bytes(buf.getvalue())
    state = json.loads((out / "state.json").read_text())
    state["files"]["optimizer.pt"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (out / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError) as e:
        train(tiny(data, out, steps=2, resume=True))
    msg = one_line_error(e)
    assert msg.startswith(f"{out / 'optimizer.pt'} is not a checkpoint file dcign-eval wrote")
    assert "weights_only" not in msg and "trust" not in msg
