"""The scripts under scripts/: their output, and bad input ending each with one ``error:`` line
and exit status 2.

Each script runs once as a real process (``python scripts/NAME``, as a user runs it); the other
tests call its ``main`` in-process (the ``run_script`` fixture of tests/conftest.py), which runs
the same code without a new interpreter importing torch for each call."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_each_script_runs_as_a_file_and_refuses_bad_input_with_one_line(tmp_path):
    bad = {"reconstruction_mse.py": ["no-such-model"],
           "blind_lineup.py": ["read"],
           "select_checkpoint.py": [str(tmp_path / "none")],
           "ship_model.py": [str(tmp_path / "none"), "dcign"],
           "build_head_asset.py": [str(tmp_path / "none.whl"), "--out",
                                   str(tmp_path / "head.npz")]}
    procs = {script: subprocess.Popen([sys.executable, str(SCRIPTS / script), *args],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      cwd=tmp_path)
             for script, args in bad.items()}  # at once: each spends its time importing
    for script, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (script, err)
        assert err.startswith("error: ") and err.count("\n") == 1, (script, err)
        assert out == "", (script, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing rendered or written


def test_reconstruction_mse_table(tmp_path, run_script):
    code, out, err = run_script("reconstruction_mse.py", "vae", "dcign", "--faces", "3",
                                "--csv", tmp_path / "rec.csv")
    assert code == 0, err
    tidy = pd.read_csv(tmp_path / "rec.csv")
    assert list(tidy.columns) == ["model", "metric", "value", "faces"]
    assert sorted(zip(tidy.model, tidy.metric)) == [
        ("dcign", "reconstruction_mse"), ("dcign", "reconstruction_ssim"),
        ("vae", "reconstruction_mse"), ("vae", "reconstruction_ssim")]
    first, second = out.strip().split("\n\n")
    header, *rows = first.splitlines()
    assert header.split() == ["model", "faces", "MSE", "SSIM"]
    assert [row.split()[:2] for row in rows] == [["vae", "3"], ["dcign", "3"]]
    for row in rows:  # each mean ± half its interval over the faces
        mse, pm, mse_half, ssim, pm2, ssim_half = row.split()[2:]
        assert pm == pm2 == "±" and float(mse_half) >= 0 and float(ssim_half) >= 0
        assert 0 < float(mse) < 0.05 and 0 < float(ssim) <= 1
    header, *rows = second.splitlines()
    assert header.split() == ["model", "lineup", "identified", "in_top_5", "mean_rank",
                              "own_face_mse", "nearest_other"]
    for row, sheet in zip(rows, first.splitlines()[1:]):
        model, n, identified = row.split()[:3]
        assert n == "3" and 0 <= float(identified) <= 1
        # the lineup's distance to its own face is the sheet's MSE, interval and all
        assert row.split()[-6:-3] == sheet.split()[2:5]


def test_reconstruction_mse_bad_input(run_script):
    for args in (["no-such-model"], ["vae", "--faces", "0"]):
        code, out, err = run_script("reconstruction_mse.py", *args)
        assert code == 2
        assert err.startswith("error: ") and err.count("\n") == 1


def test_blind_lineup_makes_sheets_and_scores_answers(tmp_path, run_script):
    def blind(*args):
        return run_script("blind_lineup.py", *args)

    code, out, err = blind("make", "vae", "--out", tmp_path, "--rows", "7", "--faces", "8",
                           "--control")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.json", "sheet-1.png",
                                                           "sheet-2.png"]
    answers = json.loads((tmp_path / "key.json").read_text())["answers"]
    code, out, err = blind("score", tmp_path, ",".join(map(str, answers)))
    assert code == 0 and "7 of 7 right" in out
    assert not (tmp_path / "readings.json").exists()  # kept only when a reader is named

    wrong = [a % 2 + 1 for a in answers]  # never the answer
    for reader, given in (("ann", answers), ("bob", wrong), ("ann", answers)):
        code, out, err = blind("score", tmp_path, ",".join(map(str, given)), "--reader", reader)
        assert code == 0, err
    readings = json.loads((tmp_path / "readings.json").read_text())
    assert sorted(readings) == ["ann", "bob"]  # a reader scored again replaces their reading
    assert (readings["ann"]["right"], readings["bob"]["right"]) == (7, 0)
    code, out, err = blind("summary", tmp_path)
    assert code == 0, err
    header, row = out.strip().splitlines()
    assert header.split()[:3] == ["model", "probe", "readers"]
    assert row.split()[0] == "vae" and "another pose" in row
    assert row.split()[-6:-1] == ["2", "7", "14", "0.5", "0.2"]  # readers .. chance
    for copy in ("many/one", "many/two"):  # a folder of tests' folders is read one level down
        (tmp_path / copy).mkdir(parents=True)
        for name in ("key.json", "readings.json"):
            (tmp_path / copy / name).write_bytes((tmp_path / name).read_bytes())
    code, out, err = blind("summary", tmp_path / "many")
    assert code == 0, err
    assert out.strip().splitlines()[1].split()[-6:-1] == ["2", "14", "28", "0.5", "0.2"]

    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "key.json").write_bytes((tmp_path / "key.json").read_bytes())
    (tmp_path / "torn" / "readings.json").write_text('{"ann": {"right": 3')
    for bad in (["score", tmp_path, "1,2"], ["score", tmp_path / "none", "1"],
                ["make", "vae", "--out", tmp_path / "x", "--faces", "0"],
                ["summary", tmp_path / "torn"], ["summary", tmp_path / "none"],
                ["summary", tmp_path / "key.json"]):
        code, out, err = blind(*bad)
        assert code == 2 and err.startswith("error: ")
        assert err.count("\n") == 1, err


def test_ship_model_card_names_every_stage(tmp_path, make_monovariant_data):
    import importlib.util

    import torch

    from trainer.config import TrainConfig
    from trainer.train import train
    spec = importlib.util.spec_from_file_location("ship_model", SCRIPTS / "ship_model.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)

    data = make_monovariant_data(tmp_path / "mono64", size=64)
    tiny = dict(data=str(data), width=0.125, checkpoint_every=2, val_every=2, val_batches=2,
                quiet=True, verify_data=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(out=str(tmp_path / "mono"), steps=2, unclamped_share=0.5, **tiny))
        train(TrainConfig(out=str(tmp_path / "dec"), steps=3, mode="vae", freeze_encoder=True,
                          decoder_width=0.25, lr_schedule="cosine",
                          init_from=str(tmp_path / "mono"), **tiny))
    finally:
        torch.set_num_threads(threads)
    # the decoder run records the run it started from: the card lists both without being told
    metrics = pd.DataFrame({"model": ["dcign"] * 2, "metric": ["mig", "spearman_light"],
                            "value": [0.25, 0.5]})
    text = ship.card("dcign", tmp_path / "dec", metrics, limits="- it is tiny")
    assert text.startswith("# Shipped model `dcign`\n\nA DC-IGN trained with monovariant batches")
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## How to rebuild it", "## Figures", "## Limits"]
    assert "dcign-eval train --recipe recipes/dcign.toml --out runs/dcign" in text
    assert "2 stages, 5 steps = 100 images, " in text
    assert ("| `mono` | monovariant mode (width 0.125, KL weight 1, ratio 1:1:1:10, invariance "
            "strength 0.01, unclamped share 0.5) | 2 | ") in text
    assert ("| `dec` | vae mode, decoder alone, encoder frozen, cosine learning rate (width "
            "0.125, decoder 0.25, KL weight 1) | 3 | ") in text
    assert ("| Spearman \\|rho\\|, light neuron vs its angle | 0.500 | `dcign-eval metrics` |"
            in text)
    assert "| MIG | 0.250 | `dcign-eval metrics` |" in text
    assert text.rstrip().endswith("## Limits\n\n- it is tiny")
    assert len(text.splitlines()) < 60  # one page

    # each stage's own figures, from tidy CSVs naming the stages; a stage not measured is left out
    stages = pd.DataFrame({"model": ["dec", "mono", "mono", "dec", "other"],
                           "metric": ["spearman_azimuth", "spearman_azimuth",
                                      "reconstruction_mse", "reconstruction_mse", "mig"],
                           "value": [0.9, 0.5, 0.01234, 0.005, 1.0]})
    text = ship.card("dcign", tmp_path / "dec", metrics, stage_figures=stages)
    table = text[text.index("## What each stage added"):].split("\n\n")[2].splitlines()
    assert table == ["| stage | azimuth | MSE |", "|---|---|---|",
                     "| `mono` | 0.500 | 0.0123 |", "| `dec` | 0.900 | 0.0050 |"]
    assert "## What each stage added" not in ship.card("dcign", tmp_path / "dec", metrics)
    # variants of the recipe: rows after the stages', labelled as given, in their order
    variants = pd.DataFrame({"model": ["no mono", "no mono", "dec longer"],
                             "metric": ["spearman_azimuth", "reconstruction_mse",
                                        "reconstruction_mse"], "value": [0.25, 0.02, 0.004]})
    text = ship.card("dcign", tmp_path / "dec", metrics, stage_figures=stages, variants=variants)
    table = text[text.index("## What each stage added"):].split("\n\n")[2].splitlines()
    assert table[2:] == ["| `mono` | 0.500 | 0.0123 |", "| `dec` | 0.900 | 0.0050 |",
                         "| no mono | 0.250 | 0.0200 |", "| dec longer |  | 0.0040 |"]

    from dcign_eval.report import load_report_models, model_card
    card = model_card(load_report_models(tmp_path / "dec")[0])
    assert card["kind"] == "DC-IGN (monovariant training)"
    assert card["width"] == "0.125 (decoder 0.25)"
    assert card["last stage trained"].startswith("the decoder alone, encoder frozen (random")
    assert card["learning rate"] == "0.0005 (cosine, to 0)"
    mono = model_card(load_report_models(tmp_path / "mono")[0])
    assert mono["learning rate"] == "0.0005"
    assert mono["unclamped share (random batches, nothing clamped)"] == "0.5"


def test_the_other_scripts_refuse_bad_input_with_one_line(tmp_path, monkeypatch, run_script):
    monkeypatch.chdir(tmp_path)  # select_checkpoint's default --grid-dir is ./data
    for script, args in (("select_checkpoint.py", []),
                         ("select_checkpoint.py", [tmp_path / "none"]),
                         ("ship_model.py", [tmp_path / "none", "dcign"]),
                         ("ship_model.py", [tmp_path, "bogus"]),
                         ("ship_model.py", [tmp_path, "vae", "--metrics",
                                            tmp_path / "none.csv"]),
                         ("ship_model.py", [tmp_path, "vae", "--stages", __file__]),
                         ("ship_model.py", [tmp_path, "vae", "--variants", __file__]),
                         ("build_head_asset.py", [tmp_path / "none.whl", "--out",
                                                  tmp_path / "head.npz"]),
                         ("blind_lineup.py", ["read"])):
        code, out, err = run_script(script, *args)
        assert code == 2, (script, args, err)
        assert err.startswith("error: ") and err.count("\n") == 1, (script, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing rendered or written


def test_shipped_cards_have_the_generators_shape_and_the_measured_figures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_model", SCRIPTS / "ship_model.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    root = SCRIPTS.parent
    metrics = pd.read_csv(root / "reports" / "metrics" / "metrics.csv")
    for name in ("dcign", "vae"):
        text = (root / "dcign_eval" / "models" / name / "MODEL_CARD.md").read_text()
        assert text.startswith(f"# Shipped model `{name}`\n")
        assert [line for line in text.splitlines() if line.startswith("## ")] == [
            "## How to rebuild it", "## Figures", "## What each stage added", "## Limits"]
        assert f"dcign-eval train --recipe recipes/{name}.toml --out runs/{name}" in text
        values = dict(zip(*metrics[metrics.model == name][["metric", "value"]].to_numpy().T))
        spearman = " / ".join(f"{values['spearman_' + a]:.3f}"  # reports/metrics' own figures
                              for a in ("azimuth", "elevation", "light"))
        scores = " / ".join(f"{values[m]:.3f}"
                            for m in ("mig", "dci_disentanglement", "factor_vae"))
        assert f" vs azimuth / elevation / light | {spearman} | `dcign-eval metrics` |" in text \
            or f" / light neuron vs its angle | {spearman} | `dcign-eval metrics` |" in text
        assert f"| MIG / DCI disentanglement / FactorVAE | {scores} | `dcign-eval" in text
        assert len(text.splitlines()) < 60  # one page
        recipe = tomllib.loads((root / "recipes" / f"{name}.toml").read_text())
        lineage = text[text.index("## How to rebuild it"):text.index("## Figures")]
        rows = [line.split(" | ") for line in lineage.splitlines() if line.startswith("| `")]
        assert [(r[0].strip("| `"), int(r[2].replace(",", ""))) for r in rows] == \
            [(st["name"], st["steps"]) for st in recipe["stage"]]  # the recipe's stages
