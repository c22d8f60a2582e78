"""dcign-eval report (one HTML page), on tiny models.

The tests read the page of the ``demo`` fixture (tests/conftest.py: the main job's ``tiny``
profile, run once), build a few more reports reusing its caches, and open it in headless
Chromium.
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

from dcign_eval import report as rp
from trainer.errors import DcignError

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_headline_says_what_the_metrics_say_of_a_failing_tiny_model(demo):
    folder = demo["result"].report.parent
    page = (folder / "index.html").read_text()
    headline = re.search(r'<p class="headline"><strong>(.*?)</strong></p>', page, re.S).group(1)
    # 8 monovariant steps from the pretraining order nothing well enough: the first sentence
    # must say so, with its figures
    assert headline.startswith("On held-out faces the DC-IGN does not yet show the paper&#39;s "
                               "result") and "below 0.9" in headline
    metrics = pd.read_csv(folder / "tables" / "metrics.csv")
    rho = metrics[(metrics.model == "dcign") & (metrics.metric == "spearman_azimuth")].value
    assert f"azimuth {rho.iloc[0]:.2f} (baseline " in headline


def test_page_says_where_both_models_started_and_the_recipes_deviations(demo):
    from trainer.recipe import load_recipe

    page = (demo["result"].report.parent / "index.html").read_text()
    header = page[:page.index("<nav>")]
    assert "Trained by <code>quick.toml</code>: dcign: 8 monovariant steps from the shipped " \
           "model vae-pretrain (6,000 vae steps); vae: 6 vae steps from the shipped model " \
           "vae-pretrain (6,000 vae steps)." in header
    deviations = load_recipe(Path(demo["result"].profile.recipes["dcign"])).deviations
    assert deviations and header.count("<li>") == len(deviations)
    assert "shipped with the package (vae-pretrain" in header


def test_card_names_the_pretrained_latents_behind_the_named_ones(demo):
    from dcign_eval import load_model

    # the tiny profile trains the quick recipe: its DC-IGN takes named latents "by order"
    card = rp.model_card(load_model(demo["result"].runs["dcign"]))
    assert card["latent layout"] == "azimuth = z0, elevation = z1, light = z2; intrinsic = z3..z199"
    assert re.fullmatch(r"azimuth = its z\d+, elevation = its z\d+, light = its z\d+ \(by order; "
                        r"renumbered, the same function\)",
                        card["named latents from the pretraining"])


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
