"""dcign-eval report (one HTML page) and the main job (dcign-eval demo), on tiny models.

The module runs the ``tiny`` profile of the main job once (render a few monovariant batches,
train a DC-IGN and a VAE for a dozen steps in two trainer processes, write the report with the
``tiny`` preset); the tests then read that page, build a few more reports reusing its caches,
and open it in headless Chromium.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import re
import shutil
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcign_eval import report as rp
from dcign_eval.pipeline import TINY, full_profile, quick_profile
from trainer.errors import DcignError

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models: one torch thread is faster than two contending ones on a small machine."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The tiny profile with the shipped recipe's shape: the DC-IGN starts from the baseline's weights
# at step 6 (pretraining), then both train on side by side.
PROFILE = replace(TINY, pretrain_steps=6, dcign_steps=8)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from dcign_eval.pipeline import run_demo

    root = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    result = run_demo(PROFILE, root / "out", data_root=root / "data", cache_dir=root / "cache",
                      log=lines.append)
    return {"root": root, "result": result, "log": lines,
            "kwargs": dict(grid_dir=root / "data", cache_dir=root / "cache",
                           recognition_cache=root / "out" / "cache")}


class _Links(html.parser.HTMLParser):
    """Every src/href of a page, and the tags that carry them."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key) is not None:
                self.links.append((tag, attrs[key], attrs))


def _links(page: Path) -> list[tuple[str, str, dict]]:
    parser = _Links()
    parser.feed(page.read_text())
    return parser.links


# -- the main job ----------------------------------------------------------------------------------

def test_tiny_demo_trains_both_models_and_writes_the_report(demo):
    from dcign_eval import load_model

    result = demo["result"]
    assert result.report.is_file() and result.report.name == "index.html"
    dcign, vae = load_model(result.runs["dcign"]), load_model(result.runs["vae"])
    assert dcign.latent_names == {"azimuth": 0, "elevation": 1, "light": 2}
    assert vae.latent_names == {}
    steps = {"dcign": 8, "vae": 12}
    for role, run in result.runs.items():
        state = json.loads((run / "state.json").read_text())
        assert state["step"] == steps[role] and state["status"] == "finished"
    pretrain = result.runs["vae"].parent / "vae-pretrain"
    assert json.loads((pretrain / "state.json").read_text())["step"] == 6
    assert dcign.config["train"]["init_from"] == str(pretrain)
    assert set(result.seconds) == {"data", "training", "evaluation and report", "total"}
    assert any("training dcign" in line for line in demo["log"])


def test_demo_again_reuses_runs_and_report_caches(demo):
    from dcign_eval.pipeline import run_demo

    lines: list[str] = []
    again = run_demo(PROFILE, demo["root"] / "out", data_root=demo["root"] / "data",
                     cache_dir=demo["root"] / "cache", log=lines.append)
    assert sum("already trained" in line for line in lines) == 3  # pretraining, dcign, vae
    page = again.report.read_text()
    assert "these values come from the report cache" in page  # metrics
    assert "Taken from the report cache." in page  # recognition


# -- the page --------------------------------------------------------------------------------------

def test_every_link_is_relative_and_resolves(demo):
    folder = demo["result"].report.parent
    links = _links(folder / "index.html")
    local = [(tag, link, attrs) for tag, link, attrs in links
             if not re.match(r"^(https?:|data:|#)", link)]
    assert local
    for tag, link, _ in local:
        assert not link.startswith("/") and ".." not in link.split("/"), link
        assert (folder / link).is_file(), link
    gifs = [attrs for tag, link, attrs in links if link.endswith(".gif") and tag == "img"]
    videos = [attrs for tag, link, attrs in links if tag == "video"]
    assert len(gifs) == 6 and len(videos) == 6  # 3 named neurons x (DC-IGN, baseline)
    for attrs in videos:
        assert attrs["src"].endswith(".mp4") and "controls" in attrs and "muted" in attrs
    # The folder can be moved: nothing in the page points outside it.
    assert str(demo["root"]) not in " ".join(link for _, link, _ in links)
    from trainer.io import default_mode
    assert folder.stat().st_mode & 0o777 == default_mode(directory=True)  # not mkdtemp's 0700
    manifest = json.loads((folder / "report.json").read_text())
    assert manifest["format"] == "dcign-report"
    for name in manifest["tables"]:
        assert not pd.read_csv(folder / name).empty


def test_page_has_every_section_and_provenance(demo):
    folder = demo["result"].report.parent
    page = (folder / "index.html").read_text()
    for heading in ("Model cards", "Training curve", "Data set", "Reconstructions of held-out",
                    "Lineup: recognisable as the same face?",
                    "Latent traversals", "Re-rendering fidelity", "Inferred versus true",
                    "Disentanglement metrics", "Invariant face recognition", "Provenance",
                    "Time per section"):
        assert heading in page, heading
    prov = json.loads((folder / "report.json").read_text())["provenance"]
    assert prov["package"].startswith("dcign-eval ")
    assert re.match(r"^([0-9a-f]{40}|unknown)", prov["git commit"])
    assert prov["seeds"]["report (every random choice of the analyses)"] == 0
    assert "cpu cores (os.cpu_count)" in prov["hardware"]
    assert {"model cards", "disentanglement metrics", "invariant recognition",
            "total"} <= set(prov["section seconds"])
    metrics = pd.read_csv(folder / "tables" / "metrics.csv")
    assert {"mig", "spearman_light", "intrinsic_invariance"} <= set(metrics["metric"])
    assert metrics["seconds"].notna().any()
    scatter = pd.read_csv(folder / "tables" / "inferred_vs_true.csv")
    assert set(scatter["factor"]) == {"azimuth", "elevation", "light"}
    assert scatter[scatter["model"] == "dcign"]["latent"].tolist() == [0, 1, 2]


def test_headline_says_what_the_metrics_say_of_a_failing_tiny_model(demo):
    folder = demo["result"].report.parent
    page = (folder / "index.html").read_text()
    headline = re.search(r'<p class="headline"><strong>(.*?)</strong></p>', page, re.S).group(1)
    # a DC-IGN trained for 8 steps orders nothing: the first sentence must say so, with its figures
    assert headline.startswith("On held-out faces the DC-IGN does not yet show the paper&#39;s "
                               "result") and "below 0.9" in headline
    metrics = pd.read_csv(folder / "tables" / "metrics.csv")
    rho = metrics[(metrics.model == "dcign") & (metrics.metric == "spearman_azimuth")].value
    assert f"azimuth {rho.iloc[0]:.2f} (baseline " in headline


def test_card_names_the_pretrained_latents_behind_the_named_ones(demo, tmp_path):
    from dcign_eval import load_model
    from trainer.train import TrainConfig, train

    pretrain = demo["result"].runs["vae"].parent / "vae-pretrain"
    options = {**PROFILE.dcign, "named_latents": "order", "lr": 1e-12}
    train(TrainConfig(data=str(demo["result"].data), out=str(tmp_path / "named"), steps=1,
                      width=PROFILE.width, val_every=0, quiet=True, init_from=str(pretrain),
                      **options))
    card = rp.model_card(rp.ReportModel("dcign", "named", str(tmp_path / "named"),
                                        load_model(tmp_path / "named")))
    assert card["latent layout"] == "azimuth = z0, elevation = z1, light = z2; intrinsic = z3..z11"
    assert re.fullmatch(r"azimuth = its z\d+, elevation = its z\d+, light = its z\d+ \(by order; "
                        r"renumbered, the same function\)",
                        card["named latents from the pretraining"])


def test_strings_from_configs_and_paths_are_escaped(demo, tmp_path):
    # A run directory whose name is markup: the page must show it, not run it.
    evil = tmp_path / "<img src=x onerror=alert(1)> & \"q\""
    shutil.copytree(demo["result"].runs["dcign"], evil)
    out = tmp_path / "escaped"
    rp.build_report(evil, None, out=out, settings="tiny", **demo["kwargs"])
    page = (out / "index.html").read_text()
    assert "<img src=x onerror" not in page
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;q&#34;" in page
    assert all(not link.startswith("x") for _, link, _ in _links(out / "index.html"))


def test_existing_report_is_replaced_and_other_folders_refused(demo, tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DcignError, match="does not hold a dcign-eval report"):
        rp.build_report(demo["result"].runs["dcign"], None, out=foreign, settings="tiny",
                        **demo["kwargs"])
    assert (foreign / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["notes"]  # no staging folder left behind


def test_cli_report_without_baseline(demo, tmp_path, monkeypatch, capsys):
    from dcign_eval import cli

    monkeypatch.setitem(rp.PRESETS, "quick", rp.PRESETS["tiny"])  # the CLI's default preset
    monkeypatch.setenv("DCIGN_EVAL_CACHE", str(demo["kwargs"]["cache_dir"]))
    out = tmp_path / "report"
    monkeypatch.setattr(sys, "argv", [
        "dcign-eval", "report", "--model", str(demo["result"].runs["dcign"]), "--baseline",
        "none", "--out", str(out), "--grid-dir", str(demo["kwargs"]["grid_dir"]),
        "--recognition-cache", str(demo["kwargs"]["recognition_cache"])])
    with pytest.raises(SystemExit) as e:
        cli.main()
    captured = capsys.readouterr()
    assert e.value.code in (0, None), captured.err
    assert f"wrote {out / 'index.html'}" in captured.out
    page = (out / "index.html").read_text()
    assert "entangled baseline" not in page.split("<main>")[0]
    assert len([1 for tag, link, _ in _links(out / "index.html") if tag == "video"]) == 3

    monkeypatch.setattr(sys, "argv", ["dcign-eval", "report", "--model",
                                      str(demo["result"].runs["vae"]), "--baseline", "none",
                                      "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit) as e:
        cli.main()
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert e.value.code == 2 and len(errors) == 1
    assert errors[0].startswith("error: the report's --model must be a DC-IGN")
    assert not (tmp_path / "bad").exists()


def test_a_failed_training_is_one_line_with_the_trainers_error(tmp_path):
    from dcign_eval.pipeline import _Job, train_models

    run = tmp_path / "runs" / "dcign"
    job = _Job("dcign", run, {"data": str(tmp_path / "nowhere"), "out": str(run), "steps": 5},
               5)
    with pytest.raises(DcignError) as e:
        train_models([job], parallel=False, log=lambda line: None)
    message = str(e.value)
    assert "\n" not in message and "training dcign failed" in message
    assert "no data directory" in message  # the trainer's own error line, from its log


def test_profiles_follow_the_shipped_recipe():
    assert full_profile(None).source.startswith("built-in")
    assert quick_profile(None).vae_steps == 2500 and quick_profile(None).pretrain_steps == 0
    recipe = {"dcign": {"model": {"image_size": 64},
                        "train": {"steps": 10_000, "width": 0.25, "ratio": [1, 1, 1, 1],
                                  "init_from": "runs/not-on-this-machine", "seed": 0},
                        "data": {"train_images": 240_000, "test_images": 28_000}},
              "vae": {"train": {"steps": 16_000, "width": 0.25, "mode": "vae"}}}
    full = full_profile(recipe)
    assert (full.train_batches, full.test_batches) == (3000, 350)
    assert (full.vae_steps, full.dcign_steps, full.pretrain_steps) == (16_000, 10_000, 6000)
    assert full.dcign == {"ratio": [1, 1, 1, 1], "seed": 0} and full.report == "full"
    quick = quick_profile(recipe)  # wall time: 6000 + max(10000, 10000) steps -> 2500
    assert quick.pretrain_steps + max(quick.vae_steps - quick.pretrain_steps,
                                      quick.dcign_steps) <= 2500
    assert quick.dcign["ratio"] == [1, 1, 1, 1] and quick.report == "quick"
    assert quick.train_batches == 300
    # a DC-IGN shipped after a decoder-alone stage: its config is not the recipe
    recipe["dcign"]["train"].update(mode="vae", freeze_encoder=True, steps=6000, width=0.5)
    staged = full_profile(recipe)
    assert (staged.dcign_steps, staged.vae_steps, staged.pretrain_steps) == (16_000, 16_000, 6000)
    assert staged.dcign == {} and staged.width == 0.5 and "stages" in staged.source


# -- the sections' pure parts ----------------------------------------------------------------------

def test_scatter_of_a_perfect_code_has_rho_one():
    rng = np.random.default_rng(0)
    factors = pd.DataFrame({"identity": np.repeat(np.arange(3), 40),
                            "azimuth": rng.choice(np.arange(-90, 91, 10), 120),
                            "elevation": rng.choice(np.arange(-30, 31, 10), 120),
                            "light": rng.choice(np.arange(-80, 81, 20), 120)})
    codes = np.column_stack([np.tanh(factors["azimuth"] / 60), -factors["elevation"],
                             factors["light"] ** 3, rng.normal(size=(120, 2))])
    scatter = rp.factor_scatter({"m": codes}, factors, {"m": {"azimuth": 0, "elevation": 1,
                                                              "light": 2}})
    assert len(scatter) == 3 * 120
    summary = rp.scatter_summary(scatter, {"m": True})
    assert summary["spearman"].round(9).tolist() == [1.0, -1.0, 1.0]
    assert np.allclose(summary["r2"], 1.0)
    fig = rp.plot_factor_scatter(scatter, summary, max_points=50)
    assert len(fig.axes) == 3


def test_metrics_comparison_puts_models_side_by_side():
    df = pd.DataFrame({"model": ["a", "a", "a", "b", "b", "b"],
                       "metric": ["mig", "neuron_light", "intrinsic_invariance"] * 2,
                       "value": [0.5, 2.0, 0.2, 0.1, 7.0, 0.9],
                       "seconds": [1.0, np.nan, 0.5, 2.0, np.nan, 0.25]})
    table = rp.metrics_comparison(df)
    assert table["metric"].tolist() == ["mig", "intrinsic_invariance"]
    assert table["better"].tolist() == ["higher", "lower"]
    assert table["a"].tolist() == [0.5, 0.2] and table["seconds: b"].tolist() == [2.0, 0.25]


def test_memo_encoder_encodes_only_unseen_images():
    class Counting:
        latent_names, image_size, calls = {}, 4, 0

        def encode(self, images):
            self.calls += len(images)
            return np.asarray(images, np.float32).reshape(len(images), -1)[:, :2]

    images = np.arange(5 * 16, dtype=np.uint8).reshape(5, 4, 4)
    model = Counting()
    memo = rp._MemoEncoder(model, images, model.encode(images))
    model.calls = 0
    fresh = np.full((1, 4, 4), 200, np.uint8)
    codes = memo.encode(np.concatenate([images[[3, 1]], fresh]))
    assert model.calls == 1
    np.testing.assert_array_equal(codes, model.encode(np.concatenate([images[[3, 1]], fresh])))


def test_held_out_faces_are_seeded_and_never_training_identities():
    from trainer.faces import TEST_IDENTITY_OFFSET

    a, b = rp.held_out_faces(6, 1), rp.held_out_faces(6, 1)
    pd.testing.assert_frame_equal(a, b)
    assert (a["identity"] >= TEST_IDENTITY_OFFSET + rp.RECONSTRUCTION_FIRST_IDENTITY).all()
    assert a["identity"].is_unique
    with pytest.raises(DcignError):
        rp.held_out_faces(0)


def test_lineup_identifies_true_renders_and_not_strangers():
    from dcign_eval.lineup import lineup, lineup_table, plot_lineup
    from trainer.faces import render_faces

    faces = rp.held_out_faces(5, 2)
    n = len(faces)
    truth = render_faces(faces["identity"], faces["azimuth"], faces["elevation"],
                         faces["light"]).astype(np.float32) / 255
    # "stranger": each face drawn as the next face's identity, at its own pose and light
    stranger = render_faces(np.roll(faces["identity"], -1), faces["azimuth"], faces["elevation"],
                            faces["light"]).astype(np.float32) / 255
    rec = rp.Reconstructions(faces, truth, {"exact": truth.copy(), "stranger": stranger})
    result = lineup(rec)
    assert result.candidates.shape == (n, n, 64, 64)
    np.testing.assert_array_equal(result.ranks("exact"), np.zeros(n))
    assert (result.ranks("stranger") >= 1).all()
    table = lineup_table(result).set_index("model")
    assert table.loc["exact", "identified"] == 1.0 and table.loc["stranger", "identified"] == 0.0
    assert table.loc["exact", "MSE to own face"] == 0.0 and table["chance"].eq(1 / n).all()
    assert (result.nearest_other() > 0).all()
    assert len(plot_lineup(result, faces=2, nearest=3).axes) == 2 * 2 * 4
    twice = rp.Reconstructions(pd.concat([faces, faces[:1]]), truth, {})
    with pytest.raises(DcignError, match="distinct identities"):
        lineup(twice)


def test_blind_test_hides_the_true_face_among_random_others():
    from dcign_eval.lineup import Lineup, blind_test, plot_blind_test, score_blind_test

    n, rng = 6, np.random.default_rng(0)
    candidates = rng.random((n, n, 4, 4), dtype=np.float32)
    result = Lineup(pd.DataFrame({"identity": np.arange(n)}), candidates, {}, {})
    test = blind_test(result, probes=np.zeros((n, 4, 4)), rows=4, choices=3, seed=1)
    assert len(set(test.faces)) == 4 and test.choices.shape == (4, 3, 4, 4)
    for row, (i, answer) in enumerate(zip(test.faces, test.answers)):
        np.testing.assert_array_equal(test.choices[row, answer - 1], candidates[i, i])
        others = [c for c in range(3) if c != answer - 1]
        assert not any(np.array_equal(test.choices[row, c], candidates[i, i]) for c in others)
    assert blind_test(result, np.zeros((n, 4, 4)), 4, 3, seed=1).answers == test.answers
    assert len(plot_blind_test(test, first=2, rows=6).axes) == 2 * 4
    all_right = score_blind_test(test.answers, test.answers, 3)
    assert all_right["right"] == 4 and all_right["chance"] == 4 / 3 and all_right["p"] < 0.05
    with pytest.raises(DcignError, match="answers must be"):
        score_blind_test(test.answers, [0, 1, 2, 3], 3)
    with pytest.raises(DcignError, match="rows"):
        blind_test(result, np.zeros((n, 4, 4)), rows=7)


def test_recognition_accuracy_is_a_feature_by_classifier_table():
    summary = pd.DataFrame({"feature": ["x", "x", "y", "y"], "classifier": ["knn"] * 4,
                            "protocol": ["one-view", "several-views"] * 2,
                            "accuracy": [0.1, 0.2, 0.3, 0.4]})
    wide = rp.recognition_accuracy(summary)
    assert wide.columns.tolist() == ["feature", "knn, one-view", "knn, several-views"]
    assert wide["knn, several-views"].tolist() == [0.2, 0.4]


# -- in a real browser -----------------------------------------------------------------------------

def _browser_or_skip():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium Python package (pip install -e '.[dev]')")
    if missing:
        pytest.skip("the browser test needs " + ", ".join(missing) +
                    " (Debian: apt-get install chromium chromium-driver)")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_page_loads_in_headless_chromium(demo, tmp_path):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    folder = demo["result"].report.parent
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=1280,2000"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return [...document.images].every(i => i.complete) && "
            "[...document.querySelectorAll('video')].every(v => v.readyState >= 1 || v.error)"))
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
        videos = driver.execute_script(
            "return [...document.querySelectorAll('video')].map(v => "
            "[v.getAttribute('src'), v.readyState, v.error ? v.error.code : null])")
        logs = driver.get_log("browser")
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
        server.shutdown()
    assert len(images) >= 20
    assert [src for src, width in images if not width > 0] == []
    assert len(videos) == 6
    assert [v for v in videos if v[2] is not None or v[1] < 1] == []
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
    assert shot.stat().st_size > 10_000
