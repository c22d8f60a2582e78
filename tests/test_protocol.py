"""The model protocol: any model in (a run, a shipped name, a factory in a file or a module), the
errors a user's model can make, and the two outside models of examples/ through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcign_eval.models import LoadedModel
from dcign_eval.protocol import Model, as_model, load_model, load_models
from trainer.errors import DcignError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_factory(tmp_path: Path, body: str, name: str = "user_model.py") -> Path:
    path = tmp_path / name
    path.write_text("import numpy as np\n\n" + textwrap.dedent(body))
    return path


class Mean:
    """A minimal model: two latents, the mean brightness of each image half."""

    image_size = 16

    def encode(self, images):
        x = np.asarray(images, np.float32) / 255
        return np.stack([x[:, :, :8].mean((1, 2)), x[:, :, 8:].mean((1, 2))], 1)


# -- what load_model accepts -----------------------------------------------------------------------

def test_a_factory_in_a_file_and_in_a_module(tmp_path, monkeypatch):
    body = """
        import torch

        class Halves:
            image_size = 16
            latent_names = {"light": 1}

            def encode(self, images):  # a torch tensor: accepted
                x = torch.as_tensor(np.array(images), dtype=torch.float32) / 255
                return torch.stack([x[:, :, :8].mean((1, 2)), x[:, :, 8:].mean((1, 2)),
                                    x.mean((1, 2))], 1)

        def make():
            return Halves()
        """
    path = write_factory(tmp_path, body)
    model = load_model(f"{path}:make")
    assert isinstance(model, Model) and model.name == "user_model"
    assert (model.image_size, model.latent_dim) == (16, 3)
    assert model.latent_names == {"light": 1} and model.intrinsic == (0, 2)  # the others
    assert not model.has_decode and not model.has_posterior
    images = np.zeros((5, 16, 16), np.uint8)
    images[:, :, 8:] = 255
    codes = model.encode(images)
    assert isinstance(codes, np.ndarray) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, [[0, 1, 0.5]] * 5)
    with pytest.raises(DcignError, match="has no decode"):
        model.decode(codes)
    # The same file as package.module:factory, named after the module's last part.
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    (tmp_path / "userpkg" / "halves.py").write_text(path.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    other = load_model("userpkg.halves:make")
    assert other.name == "halves" and other.fingerprint == model.fingerprint  # same codes


def test_our_runs_are_one_implementation_of_the_protocol(tiny_runs):
    runs = tiny_runs
    model = load_model(runs["tiny-dcign"])
    assert isinstance(model, Model) and isinstance(model.implementation, LoadedModel)
    state = json.loads((runs["tiny-dcign"] / "state.json").read_text())
    assert model.fingerprint == state["files"]["model.safetensors"]  # the weights' sha256
    assert model.name == "tiny-dcign" and model.latent_names == {"azimuth": 0, "elevation": 1,
                                                                 "light": 2}
    assert model.intrinsic == tuple(range(3, 8)) and model.has_decode and model.has_posterior
    assert model.config["model"]["latent_dim"] == 8  # the run's own members read through
    assert as_model(model) is model
    twice = load_models([runs["tiny-vae"], runs["tiny-vae"]])
    assert [m.name for m in twice] == ["tiny-vae", "tiny-vae (2)"]
    assert twice[0].intrinsic == tuple(range(8))  # nothing named: the whole code


def test_a_fingerprint_follows_the_codes():
    a, b = Model(Mean()), Model(Mean())
    assert a.fingerprint == b.fingerprint

    class Brighter(Mean):
        def encode(self, images):
            return super().encode(images) * 2

    assert Model(Brighter()).fingerprint != a.fingerprint


# -- what a user's model can get wrong: one error line, exit 2 -------------------------------------

ERRORS = {
    "syntax": ("def make(:\n", "cannot import"),
    "raises": ("def make():\n    raise ValueError('weights not found')\n",
               "raised ValueError: weights not found"),
    "no-encode": ("class M:\n    image_size = 16\n\ndef make():\n    return M()\n",
                  "has no encode"),
    "no-size": ("class M:\n    def encode(self, x):\n        return np.zeros((len(x), 2))\n\n"
                "def make():\n    return M()\n", "has no image_size"),
    "shape": ("class M:\n    image_size = 16\n    def encode(self, x):\n"
              "        return np.zeros(len(x))\n\ndef make():\n    return M()\n",
              "encode returned shape (4,) for 4 images; expected (4, D)"),
    "rows": ("class M:\n    image_size = 16\n    def encode(self, x):\n"
             "        return np.zeros((2, 3))\n\ndef make():\n    return M()\n",
             "encode returned shape (2, 3) for 4 images"),
    "nan": ("class M:\n    image_size = 16\n    def encode(self, x):\n"
            "        z = np.zeros((len(x), 3))\n        z[1, 2] = np.nan\n        return z\n\n"
            "def make():\n    return M()\n", "non-finite values (NaN or inf) for 1 of 4 images"),
    "size": ("class M:\n    image_size = 3.5\n    def encode(self, x):\n"
             "        return np.zeros((len(x), 3))\n\ndef make():\n    return M()\n",
             "image_size must be an int"),
    "no-factory": ("def other():\n    pass\n", "has no factory 'make'"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_a_broken_model_is_one_error_line(case, tmp_path, run_cli):
    source, expected = ERRORS[case]
    path = tmp_path / f"broken_{case.replace('-', '_')}.py"
    path.write_text("import numpy as np\n\n" + source)
    out = tmp_path / "out"
    code, _, err = run_cli(["metrics", "--model", f"{path}:make", "--out", out,
                            "--grid-dir", tmp_path / "data"])
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert expected in err, err
    assert not out.exists() and not (tmp_path / "data").exists()  # nothing done before the error


def test_unknown_specs_name_themselves(tmp_path):
    with pytest.raises(DcignError, match="cannot import no_such_package.models"):
        load_model("no_such_package.models:make")
    with pytest.raises(DcignError, match="no model file"):
        load_model(f"{tmp_path / 'missing.py'}:make")
    with pytest.raises(DcignError, match="no model 'gan'"):
        load_model("gan")


# -- the two outside models of examples/, end to end through the CLI --------------------------------

def shipped_latent_names() -> dict[str, int]:
    from safetensors import safe_open

    with safe_open(str(EXAMPLES / "beta_vae.safetensors"), "pt") as f:
        return json.loads(f.metadata()["latent_names"])


def test_metrics_of_outside_models_name_their_latents(tmp_path, run_cli):
    out = tmp_path / "m"
    code, stdout, err = run_cli([
        "metrics", "--model", f"{EXAMPLES / 'beta_vae.py'}:make_model",
        "--model", f"{EXAMPLES / 'pca_model.py'}:make_model", "--out", out, "--identities", 2,
        "--grid-dir", tmp_path / "data", "--num-train", 100, "--num-eval", 50,
        "--metric", "mig"])
    assert code == 0, err
    df = pd.read_csv(out / "metrics.csv")
    assert list(df.model.unique()) == ["beta-vae", "pca"]
    assert {"mig", "spearman_light", "intrinsic_invariance"} <= set(df.metric)
    # The beta-VAE takes 32x32 faces: the grid is rendered at its size too.
    assert {p.name for p in (tmp_path / "data").iterdir()} == {"eval-2id-32px", "eval-2id-64px"}
    names = shipped_latent_names()
    assert names, "the shipped beta-VAE names its latents"
    named = ", ".join(f"{f} = z{k} (named)" for f, k in names.items())
    assert f"beta-vae: {named}" in stdout
    for factor, k in names.items():
        row = df[(df.model == "beta-vae") & (df.metric == f"neuron_{factor}")]
        assert row.value.tolist() == [k]
    assert "pca: azimuth = z" in stdout and "(best single latent)" in stdout


def test_outside_models_in_traverse_and_diagnose(tmp_path, run_cli):
    pca = f"{EXAMPLES / 'pca_model.py'}:make_model"
    code, stdout, err = run_cli(["traverse", "--model", pca, "--neuron", "light", "--frames", 4,
                                 "--out", tmp_path / "t"])
    assert code == 0, err
    for ext in ("gif", "mp4", "png"):
        assert (tmp_path / "t" / f"pca-light.{ext}").stat().st_size > 0
    assert "the model has no light neuron" in stdout
    bvae = f"{EXAMPLES / 'beta_vae.py'}:make_model"
    code, stdout, err = run_cli(["diagnose", "--model", bvae, "--out", tmp_path / "d",
                                 "--identities", 2, "--grid-dir", tmp_path / "data"])
    assert code == 0, err
    table = pd.read_csv(tmp_path / "d" / "diagnostics.csv")
    assert list(table.neuron) == list(shipped_latent_names())
    assert table.posterior_sd.isna().all() and table.spearman.notna().all()  # no posterior
    assert not (tmp_path / "d" / "code_budget.csv").exists()


def test_a_model_without_decode_is_measured_but_not_traversed(tmp_path, run_cli):
    from dcign_eval.report.sections import reconstructions, traversals
    from dcign_eval.report.settings import PRESETS

    path = write_factory(tmp_path, """
        class Mean:
            image_size = 16
            name = "mean"

            def encode(self, images):
                return np.asarray(images, np.float32).mean(axis=(1, 2))[:, None]

        def make():
            return Mean()
        """)
    code, _, err = run_cli(["traverse", "--model", f"{path}:make", "--out", tmp_path / "t"])
    assert code == 2 and err.strip() == "error: mean has no decode; a traversal decodes each frame"
    model = load_model(f"{path}:make")
    rec = reconstructions.section([model], PRESETS["tiny"], 0)
    assert rec.context["reconstructions"] is None and not rec.figures
    assert rec.context["reconstructions_absent"] == ["mean has no decode, so no reconstructions."]
    trav = traversals.section([model], PRESETS["tiny"], tmp_path / "page", tmp_path / "cache")
    assert trav.context["fidelity"] is None and trav.context["traversals"] == []
    assert trav.context["traversals_absent"] == [
        "mean has no decode, so no traversals or re-rendering."]


def test_the_beta_vae_training_script_runs(tmp_path):
    weights = tmp_path / "bvae.safetensors"
    r = subprocess.run([sys.executable, str(EXAMPLES / "train_beta_vae.py"), "--seconds", "1",
                        "--images", "200", "--out", str(weights)], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, str(EXAMPLES))
    try:
        from beta_vae import make_model
    finally:
        sys.path.remove(str(EXAMPLES))
    model = Model(make_model(weights))
    assert model.image_size == 32 and model.latent_dim == 8 and model.has_decode
    assert model.decode(model.encode(np.zeros((2, 32, 32), np.uint8))).shape == (2, 32, 32)
