"""dcign-eval report (one HTML page) and the main job (dcign-eval demo), on tiny models.

The module runs the ``tiny`` profile of the main job once (render a few monovariant batches,
train a DC-IGN and a VAE for a dozen steps in two trainer processes, write the report with the
``tiny`` preset); the tests then read that page, build a few more reports reusing its caches,
and open it in headless Chromium.
"""

from __future__ import annotations

import contextlib
import functools
import html
import html.parser
import http.server
import json
import re
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcign_eval import reconstruction as rc
from dcign_eval import report as rp
from dcign_eval.pipeline import QUICK, TINY, profile, recipe_jobs
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


# The tiny profile: the quick recipe's shape at a tiny scale. The DC-IGN and the baseline both
# start from a 6-step pretraining, then train side by side.
PROFILE = TINY


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
    steps = {"dcign": 8, "vae": 6}
    for role, run in result.runs.items():
        state = json.loads((run / "state.json").read_text())
        assert state["step"] == steps[role] and state["status"] == "finished"
    pretrain = result.runs["vae"].parent / "pretrain"
    assert json.loads((pretrain / "state.json").read_text())["step"] == 6
    assert dcign.config["train"]["init_from"] == str(pretrain)
    assert vae.config["train"]["init_from"] == str(pretrain)
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
    assert list(dict.fromkeys(metrics["model"])) == ["dcign", "vae", "true factors (ceiling)",
                                                     "random code (floor)"]
    ceiling = metrics[metrics["model"] == "true factors (ceiling)"].set_index("metric")["value"]
    floor = metrics[metrics["model"] == "random code (floor)"].set_index("metric")["value"]
    assert ceiling["spearman_azimuth"] == 1 and ceiling["intrinsic_invariance"] == 0
    assert floor["spearman_azimuth"] < 0.2 and floor["intrinsic_invariance"] > 0.8
    assert metrics["seconds"].notna().any()
    scatter = pd.read_csv(folder / "tables" / "inferred_vs_true.csv")
    assert set(scatter["factor"]) == {"azimuth", "elevation", "light"}
    assert scatter[scatter["model"] == "dcign"]["latent"].tolist() == [0, 1, 2]


def test_strings_from_configs_and_paths_are_escaped(demo, tmp_path):
    # A run directory whose name is markup: the page must show it, not run it.
    evil = tmp_path / "<img src=x onerror=alert(1)> & \"q\""
    shutil.copytree(demo["result"].runs["dcign"], evil)
    out = tmp_path / "escaped"
    rp.build_report([evil], out=out, settings="tiny", **demo["kwargs"])
    page = (out / "index.html").read_text()
    assert "<img src=x onerror" not in page
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;q&#34;" in page
    assert all(not link.startswith("x") for _, link, _ in _links(out / "index.html"))


def test_existing_report_is_replaced_and_other_folders_refused(demo, tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DcignError, match="does not hold a dcign-eval report"):
        rp.build_report([demo["result"].runs["dcign"]], out=foreign, settings="tiny",
                        **demo["kwargs"])
    assert (foreign / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["notes"]  # no staging folder left behind


def test_cli_report_of_one_model(demo, tmp_path, monkeypatch, capsys):
    from dcign_eval import cli

    monkeypatch.setitem(rp.PRESETS, "quick", rp.PRESETS["tiny"])  # the CLI's default preset
    monkeypatch.setenv("DCIGN_EVAL_CACHE", str(demo["kwargs"]["cache_dir"]))
    out = tmp_path / "report"
    monkeypatch.setattr(sys, "argv", [
        "dcign-eval", "report", "--model", str(demo["result"].runs["dcign"]),
        "--out", str(out), "--grid-dir", str(demo["kwargs"]["grid_dir"]),
        "--recognition-cache", str(demo["kwargs"]["recognition_cache"])])
    with pytest.raises(SystemExit) as e:
        cli.main()
    captured = capsys.readouterr()
    assert e.value.code in (0, None), captured.err
    assert f"wrote {out / 'index.html'}" in captured.out
    header = (out / "index.html").read_text().split("<main>")[0]
    assert header.count('class="model-name"') == 1
    assert len([1 for tag, link, _ in _links(out / "index.html") if tag == "video"]) == 3

    monkeypatch.setattr(sys, "argv", ["dcign-eval", "report", *["--model", "vae"] * 9,
                                      "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit) as e:
        cli.main()
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert e.value.code == 2 and len(errors) == 1
    assert errors[0] == "error: the report compares 1 to 8 models, got 9"
    assert not (tmp_path / "bad").exists()


def test_a_failed_training_is_one_line_with_the_trainers_error(tmp_path):
    from dcign_eval.pipeline import _Job, train_models

    run = tmp_path / "runs" / "dcign"
    job = _Job("dcign", run, ["--data", str(tmp_path / "nowhere"), "--out", str(run), "--steps",
                              "5"], 5)
    with pytest.raises(DcignError) as e:
        train_models([job], parallel=False, log=lambda line: None)
    message = str(e.value)
    assert "\n" not in message and "training dcign failed" in message
    assert "no data directory" in message  # the trainer's own error line, from its log


def test_profiles_train_the_shipped_recipes():
    quick, full = QUICK, profile("full")
    assert quick.recipes["dcign"] == quick.recipes["vae"]
    assert Path(quick.recipes["dcign"]).name == "quick.toml"
    assert {k: Path(v).name for k, v in full.recipes.items()} == {"dcign": "dcign.toml",
                                                                   "vae": "vae.toml"}
    # one recipe for both: the stages they share first, then one branch a model
    first, models, runs = recipe_jobs(quick, Path("o"), Path("d"))
    assert [j.run for j in first] == [Path("o/pretrain")]
    assert [j.run for j in models] == [Path("o/dcign"), Path("o/vae")]
    assert runs == {"dcign": Path("o/dcign"), "vae": Path("o/vae")}
    assert models[0].argv[-2:] == ["--stage", "dcign"] and "--set=data=d" in models[0].argv
    # a recipe a model: each whole, its output directory the model
    first, models, runs = recipe_jobs(full, Path("o"), Path("d"))
    assert first == [] and runs == {"dcign": Path("o/dcign"), "vae": Path("o/vae")}
    assert [j.run for j in models] == [Path("o/dcign/decoder-wide"), Path("o/vae/decoder-wide")]
    assert "--stage" not in models[0].argv


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


def test_held_out_faces_are_seeded_and_never_training_identities():
    from trainer.faces import TEST_IDENTITY_OFFSET

    a, b = rc.held_out_faces(6, 1), rc.held_out_faces(6, 1)
    pd.testing.assert_frame_equal(a, b)
    assert (a["identity"] >= TEST_IDENTITY_OFFSET + rc.RECONSTRUCTION_FIRST_IDENTITY).all()
    assert a["identity"].is_unique
    with pytest.raises(DcignError):
        rc.held_out_faces(0)


def test_lineup_identifies_true_renders_and_not_strangers():
    from dcign_eval.lineup import lineup, lineup_table, plot_lineup
    from trainer.faces import render_faces

    faces = rc.held_out_faces(5, 2)
    n = len(faces)
    truth = render_faces(faces["identity"], faces["azimuth"], faces["elevation"],
                         faces["light"]).astype(np.float32) / 255
    # "stranger": each face drawn as the next face's identity, at its own pose and light
    stranger = render_faces(np.roll(faces["identity"], -1), faces["azimuth"], faces["elevation"],
                            faces["light"]).astype(np.float32) / 255
    rec = rc.Reconstructions(faces, truth, {"exact": truth.copy(), "stranger": stranger})
    result = lineup(rec)
    assert result.candidates.shape == (n, n, 64, 64)
    np.testing.assert_array_equal(result.ranks("exact"), np.zeros(n))
    assert (result.ranks("stranger") >= 1).all()
    table = lineup_table(result).set_index("model")
    assert table.loc["exact", "identified"] == 1.0 and table.loc["stranger", "identified"] == 0.0
    assert table.loc["exact", "MSE to own face"] == 0.0 and table["chance"].eq(1 / n).all()
    assert (result.nearest_other() > 0).all()
    assert len(plot_lineup(result, faces=2, nearest=3).axes) == 2 * 2 * 4
    twice = rc.Reconstructions(pd.concat([faces, faces[:1]]), truth, {})
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


@contextlib.contextmanager
def _chromium(folder: Path, tmp_path: Path):
    """A headless Chromium with ``folder`` served over HTTP; yields (driver, page URL)."""
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

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
        yield driver
    finally:
        driver.quit()
        server.shutdown()


def test_page_loads_in_headless_chromium(demo, tmp_path):
    folder = demo["result"].report.parent
    with _chromium(folder, tmp_path) as driver:
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
        videos = driver.execute_script(
            "return [...document.querySelectorAll('video')].map(v => "
            "[v.getAttribute('src'), v.readyState, v.error ? v.error.code : null])")
        logs = driver.get_log("browser")
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    assert len(images) >= 20
    assert [src for src, width in images if not width > 0] == []
    assert len(videos) == 6
    assert [v for v in videos if v[2] is not None or v[1] < 1] == []
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
    assert shot.stat().st_size > 10_000


# -- three models side by side, one of them an outside model ----------------------------------------

SECTIONS = ("models", "reconstructions", "traversals", "scatter", "metrics", "recognition")
PCA_SPEC = str(Path(__file__).resolve().parent.parent / "examples" / "pca_model.py") + \
    ":make_model"


@pytest.fixture(scope="module")
def three(demo, tmp_path_factory):
    """``report --model dcign --model vae --model examples/pca_model.py:make_model``, tiny."""
    out = tmp_path_factory.mktemp("three") / "report"
    runs = demo["result"].runs
    result = rp.build_report([runs["dcign"], runs["vae"], PCA_SPEC], out=out, settings="tiny",
                             **demo["kwargs"])
    return result


def _section_texts(page: str) -> dict[str, str]:
    """The text of each section of the page, tags stripped."""
    out = {}
    for name in SECTIONS:
        body = page.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]
        out[name] = html.unescape(re.sub(r"<[^>]+>", " ", body))
    return out


def test_three_models_in_every_section(three):
    folder = three.index.parent
    texts = _section_texts(three.index.read_text())
    for section, text in texts.items():
        for name in ("dcign", "vae", "pca"):
            assert name in text, (section, name)
    metrics = pd.read_csv(folder / "tables" / "metrics.csv")
    assert list(dict.fromkeys(metrics["model"])) == ["dcign", "vae", "pca",
                                                     "true factors (ceiling)",
                                                     "random code (floor)"]
    recognition = pd.read_csv(folder / "recognition" / "summary.csv")
    assert {"dcign: intrinsic block", "dcign: full code", "vae: full code",
            "pca: full code"} <= set(recognition["feature"])
    rec = pd.read_csv(folder / "tables" / "reconstructions.csv")
    assert {"mse:dcign", "mse:vae", "mse:pca"} <= set(rec.columns)
    movies = [link for tag, link, _ in _links(three.index) if tag == "video"]
    assert len(movies) == 9  # three angles, three models


def test_three_model_page_in_headless_chromium(three, tmp_path):
    with _chromium(three.index.parent, tmp_path) as driver:
        texts = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('main > section')]"
            ".map(s => [s.id, s.innerText]))")
        header = driver.execute_script(
            "return [...document.querySelectorAll('.model-name')].map(e => e.innerText)")
        broken = driver.execute_script(
            "return [...document.images].filter(i => !(i.naturalWidth > 0))"
            ".map(i => i.getAttribute('src'))")
        logs = driver.get_log("browser")
    assert header == ["dcign", "vae", "pca"]
    for section in SECTIONS:
        for name in header:
            assert name in texts[section], (section, name)
    assert broken == []
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
