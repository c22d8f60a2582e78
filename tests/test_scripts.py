"""The maintenance scripts under scripts/ that take user input: output and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPTS / "reconstruction_mse.py"), *args],
                          capture_output=True, text=True, timeout=300)


def test_reconstruction_mse_table():
    r = run("vae", "dcign", "--faces", "3")
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().split("\n\n")
    header, *rows = first.splitlines()
    assert header.split() == ["model", "faces", "MSE", "SSIM"]
    assert [row.split()[:2] for row in rows] == [["vae", "3"], ["dcign", "3"]]
    for row in rows:
        mse, ssim = map(float, row.split()[2:])
        assert 0 < mse < 0.05 and 0 < ssim <= 1
    header, *rows = second.splitlines()
    assert header.split()[:4] == ["model", "lineup", "identified", "in"]
    for row, own in zip(rows, [row.split()[2] for row in first.splitlines()[1:]]):
        model, n, identified = row.split()[:3]
        assert n == "3" and 0 <= float(identified) <= 1
        assert row.split()[-2] == own  # the lineup's distance to its own face is the sheet's MSE


def test_reconstruction_mse_bad_input():
    for args in (["no-such-model"], ["vae", "--faces", "0"]):
        r = run(*args)
        assert r.returncode == 1
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1


def test_blind_lineup_makes_sheets_and_scores_answers(tmp_path):
    script = [sys.executable, str(SCRIPTS / "blind_lineup.py")]
    r = subprocess.run(script + ["make", "vae", "--out", str(tmp_path), "--rows", "7",
                                 "--faces", "8", "--control"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.json", "sheet-1.png",
                                                           "sheet-2.png"]
    answers = json.loads((tmp_path / "key.json").read_text())["answers"]
    r = subprocess.run(script + ["score", str(tmp_path), ",".join(map(str, answers))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "7 of 7 right" in r.stdout
    assert not (tmp_path / "readings.json").exists()  # kept only when a reader is named

    wrong = [a % 2 + 1 for a in answers]  # never the answer
    for reader, given in (("ann", answers), ("bob", wrong), ("ann", answers)):
        r = subprocess.run(script + ["score", str(tmp_path), ",".join(map(str, given)),
                                     "--reader", reader], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    readings = json.loads((tmp_path / "readings.json").read_text())
    assert sorted(readings) == ["ann", "bob"]  # a reader scored again replaces their reading
    assert (readings["ann"]["right"], readings["bob"]["right"]) == (7, 0)
    r = subprocess.run(script + ["summary", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.strip().splitlines()
    assert header.split()[:3] == ["model", "probe", "readers"]
    assert row.split()[0] == "vae" and "another pose" in row
    assert row.split()[-6:-1] == ["2", "7", "14", "0.5", "0.2"]  # readers .. chance
    for copy in ("many/one", "many/two"):  # a folder of tests' folders is read one level down
        (tmp_path / copy).mkdir(parents=True)
        for name in ("key.json", "readings.json"):
            (tmp_path / copy / name).write_bytes((tmp_path / name).read_bytes())
    r = subprocess.run(script + ["summary", str(tmp_path / "many")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[1].split()[-6:-1] == ["2", "14", "28", "0.5", "0.2"]

    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "key.json").write_bytes((tmp_path / "key.json").read_bytes())
    (tmp_path / "torn" / "readings.json").write_text('{"ann": {"right": 3')
    for bad in (["score", str(tmp_path), "1,2"], ["score", str(tmp_path / "none"), "1"],
                ["make", "vae", "--out", str(tmp_path / "x"), "--faces", "0"],
                ["summary", str(tmp_path / "torn")], ["summary", str(tmp_path / "none")],
                ["summary", str(tmp_path / "key.json")]):
        r = subprocess.run(script + bad, capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and r.stderr.startswith("error: ")
        assert r.stderr.count("\n") == 1, r.stderr


def test_ship_model_card_names_every_stage(tmp_path):
    import importlib.util

    import torch

    from test_trainer_data import make_monovariant_data
    from trainer.train import TrainConfig, train
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
    text = ship.card("dcign", tmp_path / "dec", None, [], "", [])
    assert ("- Last stage: 3 steps of batch 20 (vae mode, decoder alone, encoder frozen, cosine "
            "learning rate)") in text
    assert ("1. `mono`: monovariant mode (width 0.125, KL weight 1, ratio 1:1:1:10, invariance "
            "strength 0.01, unclamped share 0.5): 2 steps, 40 images, ") in text
    assert "2. `dec`: vae mode, decoder alone" in text
    assert "- All stages: 2 (5 steps = 100 images), wall time" in text

    from dcign_eval.report import load_report_models, model_card
    card = model_card(load_report_models(tmp_path / "dec")[0])
    assert card["kind"] == "DC-IGN (monovariant training)"
    assert card["width"] == "0.125 (decoder 0.25)"
    assert card["last stage trained"].startswith("the decoder alone, encoder frozen (random")
    assert card["learning rate"] == "0.0005 (cosine, to 0)"
    mono = model_card(load_report_models(tmp_path / "mono")[0])
    assert mono["learning rate"] == "0.0005"
    assert mono["unclamped share (random batches, nothing clamped)"] == "0.5"
