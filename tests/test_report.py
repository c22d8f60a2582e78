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
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcign_eval import report as rp
from dcign_eval.report.sections import metrics as metrics_section
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


def _parsed(page: Path, parser: html.parser.HTMLParser) -> html.parser.HTMLParser:
    """``parser`` after reading ``page``."""
    parser.feed(page.read_text())
    return parser


def _links(page: Path) -> list[tuple[str, str, dict]]:
    return _parsed(page, _Links()).links


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
    # 3 named neurons x (DC-IGN, baseline): a slider's frames, the GIF and MP4 as downloads
    assert len([1 for tag, link, attrs in links if "data-frames" in attrs]) == 6
    for ext in (".gif", ".mp4"):
        downloads = [attrs for tag, link, attrs in links if link.endswith(ext)]
        assert len(downloads) == 6 and all("download" in attrs for attrs in downloads)
        assert {tag for tag, link, attrs in links if link.endswith(ext)} == {"a"}
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
    rho = metrics[(metrics.model == "dcign") & (metrics.metric == "spearman_azimuth")].iloc[0]
    # with its bootstrap interval over the grid's identities
    assert rho["interval"] == "bootstrap over the grid's 2 identities"
    assert f"azimuth {rho['value']:.2f} ± {(rho['high'] - rho['low']) / 2:.2f} (baseline " \
        in headline
    assert "± is half a 95% interval" in headline


def test_metrics_and_recognition_show_intervals_and_say_how(demo):
    texts = {k: " ".join(v.split()) for k, v in
             _section_texts(demo["result"].report.read_text()).items()}
    metrics = pd.read_csv(demo["result"].report.parent / "tables" / "metrics.csv")
    # the tiny preset draws MIG and IRS over 2 seeds, the rest once
    seeds = metrics.set_index(["model", "metric"])["seeds"]
    assert seeds["dcign", "mig"] == 2 and seeds["dcign", "sap"] == 1
    mig = metrics[(metrics.model == "dcign") & (metrics.metric == "mig")].iloc[0]
    assert mig["low"] <= mig["value"] <= mig["high"]
    shown = f"{mig['value']:.3f} ± {(mig['high'] - mig['low']) / 2:.3f}"
    assert re.search(rf"MIG higher {re.escape(shown)} ", texts["metrics"])
    assert "when their intervals do not overlap" in texts["metrics"]
    assert "not tested (one seed)" in texts["metrics"]  # SAP, drawn once
    summary = pd.read_csv(demo["result"].report.parent / "recognition" / "summary.csv")
    row = summary.iloc[0]
    assert row["resamples"] == 200
    assert f"{row['accuracy']:.3f} ± {(row['accuracy_high'] - row['accuracy_low']) / 2:.3f}" \
        in texts["recognition"]
    assert "resampled with replacement (200 resamples)" in texts["recognition"]
    assert "paired McNemar test" in texts["recognition"]
    assert "difference's interval" in texts["recognition"]


def test_reconstructions_lineup_and_fidelity_show_intervals_and_say_how(demo):
    folder = demo["result"].report.parent
    texts = {k: " ".join(v.split()) for k, v in _section_texts(folder.joinpath(
        "index.html").read_text()).items()}
    rec = pd.read_csv(folder / "tables" / "reconstructions_summary.csv").set_index("model")
    lineup = pd.read_csv(folder / "tables" / "lineup_summary.csv").set_index("model")
    fidelity = pd.read_csv(folder / "tables" / "rerender_fidelity_summary.csv")
    for table, figures in ((rec, ("mse", "ssim")),
                           (lineup, ("identified", "in_top_5", "mean_rank", "mse_to_own_face"))):
        assert list(table.index) == ["dcign", "vae"] and (table["resamples"] == 200).all()
        for figure in figures:  # the tiny preset's seed: the same intervals on every run
            assert {f"{figure}_low", f"{figure}_high", f"{figure}_difference_low"} \
                <= set(table.columns)
            assert (table[f"{figure}_low"] <= table[figure]).all()
            assert (table[figure] <= table[f"{figure}_high"]).all()
    mse = rec.loc["dcign"]
    assert f"{mse['mse']:.4f} ± {(mse['mse_high'] - mse['mse_low']) / 2:.4f}" \
        in texts["reconstructions"]
    assert "resampled with replacement (200 resamples)" in texts["reconstructions"]
    assert "paired bootstrap" in texts["reconstructions"]
    assert "vs dcign: MSE" in texts["reconstructions"]
    assert "vs dcign: identified" in texts["reconstructions"]
    # one fidelity identity in the tiny preset: no interval to show, and it says so
    assert {"mse_low", "mse_high", "recon_ssim_difference_high"} <= set(fidelity.columns)
    assert (fidelity["identities"] == 1).all() and fidelity["mse_low"].isna().all()
    assert "shown without intervals (one identity)" in texts["traversals"]
    assert "not tested (no interval)" in texts["traversals"]


def test_paired_table_writes_values_with_intervals_and_verdicts():
    from dcign_eval.intervals import paired_means
    from dcign_eval.report.page import paired_table
    from dcign_eval.report.sections.reconstructions import RECONSTRUCTION_FIGURES

    rng = np.random.default_rng(0)
    base = pd.DataFrame({"mse": rng.uniform(0.01, 0.03, 30), "ssim": rng.uniform(0.7, 0.9, 30)})
    worse = base.assign(mse=base["mse"] + 0.002)
    tidy = paired_means({"a": base, "b": base.copy(), "c": worse}, 200, 0).assign(faces=30)
    table = paired_table(tidy, RECONSTRUCTION_FIGURES, {"model": "model", "faces": "faces"})
    assert table.columns == ["model", "faces", "MSE", "SSIM", "vs a: MSE", "vs a: SSIM"]
    rows = {row[0]: dict(zip(table.columns, row)) for row in table.rows}
    a = tidy.iloc[0]
    assert rows["a"]["MSE"] == f"{a['mse']:.4f} ± {(a['mse_high'] - a['mse_low']) / 2:.4f}"
    assert rows["a"]["vs a: MSE"] == ""  # the reference
    assert rows["b"]["vs a: MSE"] == rows["b"]["vs a: SSIM"] == "not significant"
    assert rows["c"]["vs a: MSE"] == "significant: higher (worse)"
    assert table.numeric == [False, True, True, True, False, False]


def test_dci_informativeness_is_named_for_the_estimator_that_ran():
    from dcign_eval.metrics import metric_settings
    from dcign_eval.report.sections.metrics import metric_label

    lasso = metric_settings(dci_mode="lasso")["dci_informativeness"]
    trees = metric_settings(dci_mode="gbt-hist")["dci_informativeness"]
    assert metric_label("dci_informativeness", lasso) == "DCI informativeness (test R²)"
    assert metric_label("dci_informativeness", trees) == "DCI informativeness (test accuracy)"
    # without the estimator (an old table): both, honestly
    assert metric_label("dci_informativeness") == \
        "DCI informativeness (test accuracy; test R² with lasso)"
    df = _tidy([("a", "dci_informativeness", 0.8, 0.8, 0.8, 1, 1.0)]).assign(settings=lasso)
    assert rp.metrics_comparison(df)["measure"].tolist() == ["DCI informativeness (test R²)"]


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

    monkeypatch.setitem(rp.PRESETS, "standard", rp.PRESETS["tiny"])  # the CLI's default
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
    assert len([1 for _, _, attrs in _links(out / "index.html") if "data-frames" in attrs]) == 3

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


def _tidy(rows):
    return pd.DataFrame(rows, columns=["model", "metric", "value", "low", "high", "seeds",
                                       "seconds"]).assign(
        interval=lambda d: d["seeds"].map(metrics_section.interval_label))


def test_metrics_comparison_puts_models_side_by_side():
    df = _tidy([("a", "mig", 0.5, 0.5, 0.5, 1, 1.0), ("a", "neuron_light", 2, 2, 2, 1, np.nan),
                ("a", "intrinsic_invariance", 0.2, 0.2, 0.2, 1, 0.5),
                ("b", "mig", 0.1, 0.1, 0.1, 1, 2.0), ("b", "neuron_light", 7, 7, 7, 1, np.nan),
                ("b", "intrinsic_invariance", 0.9, 0.9, 0.9, 1, 0.25)])
    table = rp.metrics_comparison(df)
    assert table["metric"].tolist() == ["mig", "intrinsic_invariance"]
    assert table["better"].tolist() == ["higher", "lower"]
    # one seed: the value alone, and no test of the difference
    assert table["a"].tolist() == ["0.500", "0.200"] and table["seconds: b"].tolist() == [2.0, 0.25]
    assert table["a vs b"].tolist() == ["not tested (one seed)"] * 2


def test_metrics_comparison_marks_differences_by_overlapping_intervals():
    ceiling = metrics_section.CEILING
    df = _tidy([("a", "mig", 0.50, 0.45, 0.55, 5, 1.0), ("a", "irs", 0.70, 0.60, 0.80, 5, 1.0),
                ("a", "r2_light", 0.9, 0.9, 0.9, 5, 1.0), ("a", "sap", 0.3, 0.3, 0.3, 1, 1.0),
                ("b", "mig", 0.10, 0.05, 0.15, 5, 1.0), ("b", "irs", 0.65, 0.55, 0.75, 5, 1.0),
                ("b", "r2_light", 0.5, 0.5, 0.5, 5, 1.0), ("b", "sap", 0.1, 0.1, 0.1, 1, 1.0),
                ("c", "mig", 0.20, 0.18, 0.22, 5, 1.0), ("c", "irs", 0.1, 0.08, 0.12, 5, 1.0),
                ("c", "r2_light", 0.9, 0.9, 0.9, 5, 1.0), ("c", "sap", 0.2, 0.2, 0.2, 1, 1.0),
                (ceiling, "mig", 0.9, 0.8, 1.0, 5, 0.1), (ceiling, "irs", 1, 1, 1, 5, 0.1),
                (ceiling, "r2_light", 1, 1, 1, 5, 0.1), (ceiling, "sap", 0.9, 0.9, 0.9, 1, 0.1)])
    table = rp.metrics_comparison(df).set_index("metric")
    assert table.loc["mig", "a"] == "0.500 ± 0.050" and table.loc["sap", "a"] == "0.300"
    assert table.loc["mig", ceiling] == "0.900 ± 0.100"
    # every other model against the first; the reference codes are not compared
    assert [c for c in table.columns if " vs " in c] == ["a vs b", "a vs c"]
    assert table["a vs b"].to_dict() == {"mig": "significant", "irs": "not significant",
                                         "r2_light": "not tested (no spread)",
                                         "sap": "not tested (one seed)"}
    assert table.loc["irs", "a vs c"] == "significant"
    # a bootstrap interval counts as an interval though the seeds are one
    boot = df.assign(seeds=1, interval="bootstrap over the grid's 10 identities")
    assert rp.metrics_comparison(boot).set_index("metric").loc["mig", "a vs b"] == "significant"


def test_a_difference_is_established_by_the_bootstrap_only_when_its_interval_excludes_zero():
    from dcign_eval.report.sections.recognition import bootstrap_mark

    assert bootstrap_mark(0.01, 0.2) == "excludes 0" and bootstrap_mark(-0.2, -0.01) == "excludes 0"
    # McNemar may call this one significant: probes of a few identities carry it
    assert bootstrap_mark(-0.03, 0.14) == "includes 0"
    assert bootstrap_mark(0.0, 0.1) == "includes 0"
    assert bootstrap_mark(np.nan, np.nan) == ""


def test_card_training_loss_is_a_mean_with_its_interval():
    from dcign_eval.report.sections.cards import tail_mean

    # two batches: mean 11, sd sqrt(2), t(0.975, 1) = 12.706
    assert tail_mean(pd.Series([10.0, 12.0])) == \
        "11.0 ± 12.7 (mean of the last 2 training batches)"
    assert tail_mean(pd.Series([10.0])) == "10.0 (one training batch)"


def test_recognition_accuracy_is_a_feature_by_classifier_table():
    summary = pd.DataFrame({"feature": ["x", "x", "y", "y"], "classifier": ["knn"] * 4,
                            "protocol": ["one-view", "several-views"] * 2,
                            "accuracy": [0.1, 0.2, 0.3, 0.4],
                            "accuracy_low": [0.0, 0.1, np.nan, 0.3],
                            "accuracy_high": [0.3, 0.3, np.nan, 0.6]})
    wide = rp.recognition_accuracy(summary)
    assert wide.columns.tolist() == ["feature", "knn, one-view", "knn, several-views"]
    assert wide["knn, one-view"].tolist() == ["0.100 ± 0.150", "0.300"]  # no interval: alone
    assert wide["knn, several-views"].tolist() == ["0.200 ± 0.100", "0.400 ± 0.150"]


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
def _chromium(folder: Path, tmp_path: Path, over_http: bool = True):
    """A headless Chromium on ``folder``'s page, served over HTTP or opened as a file:// URL (as
    a reader who double-clicks index.html); yields the driver once every image has loaded."""
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    server = None
    if over_http:
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
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/index.html" if server
                   else (folder / "index.html").resolve().as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return [...document.images].every(i => i.complete)"))
        yield driver
    finally:
        driver.quit()
        if server:
            server.shutdown()


def test_page_loads_in_headless_chromium(demo, tmp_path):
    folder = demo["result"].report.parent
    with _chromium(folder, tmp_path) as driver:
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
        logs = driver.get_log("browser")
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    assert len(images) >= 15  # the figures and plots, and one frame of each of 6 traversals
    assert [src for src, width in images if not width > 0] == []
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
    assert shot.stat().st_size > 10_000


# -- the traversal sliders -------------------------------------------------------------------------

class _Traversals(html.parser.HTMLParser):
    """Each traversal of a page as its HTML states it: the slider, the angle labels and, per
    model, the frames its img can show and the latent value labels."""

    def __init__(self):
        super().__init__()
        self.items: list[dict] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "div" and "traversal" in classes:
            self.items.append({"fps": float(a["data-fps"]), "images": [], "values": [],
                               "downloads": []})
        if not self.items:
            return
        item = self.items[-1]
        if tag == "span" and "controls" in classes:
            item["controls hidden"] = "hidden" in a
        elif tag == "input" and a.get("type") == "range":
            item["factor"], item["range"] = a["aria-label"], a
        elif tag == "output":
            item["angles"], item["angle"] = json.loads(a["data-labels"]), []
            self._text = item["angle"]
        elif tag == "img" and "data-frames" in a:
            item["images"].append({"src": a["src"], "frames": json.loads(a["data-frames"])})
        elif tag == "p" and "value" in classes:
            item["values"].append(json.loads(a["data-labels"]))
        elif tag == "a" and "download" in a:
            item["downloads"].append(a["href"])

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "output":
            self._text = None


def _traversals(page: Path) -> list[dict]:
    return _parsed(page, _Traversals()).items


def test_slider_frames_are_beside_the_page_and_lined_up_on_the_angle(demo):
    import imageio.v3 as iio

    folder = demo["result"].report.parent
    items = _traversals(folder / "index.html")
    assert [t["factor"] for t in items] == ["azimuth", "elevation", "light"]
    assert items[0]["angles"] == ["azimuth -90°", "azimuth -45°", "azimuth 0°", "azimuth +45°",
                                  "azimuth +90°"]  # the tiny preset: 5 frames
    assert items[2]["angles"][0] == "light -80° (from the left)"
    referenced = set()
    for t in items:
        # Without JavaScript the page shows the first frame, its angle and the downloads; the
        # controls, which need the script, stay hidden.
        assert t["controls hidden"] and (t["range"]["min"], t["range"]["max"]) == ("0", "4")
        assert "".join(t["angle"]) == t["angles"][0] and len(t["angles"]) == 5
        assert len(t["images"]) == 2 and len(t["downloads"]) == 4  # dcign, vae: GIF and MP4
        for img, values in zip(t["images"], t["values"]):
            assert img["src"] == img["frames"][0] and len(img["frames"]) == len(values) == 5
            for link in img["frames"]:
                assert not link.startswith("/") and ".." not in link.split("/"), link
                assert (folder / link).is_file(), link
            referenced |= set(img["frames"])
        # Lined up: frame k of every model shows the true render at the same angle, and that
        # render moves along the sweep.
        shown = [np.stack([iio.imread(folder / f) for f in img["frames"]]) for img in t["images"]]
        size = (shown[0].shape[2] - 2) // 2  # one face: decoded | 2-pixel gap | true render
        truths = [frames[:, :, size + 2:] for frames in shown]
        np.testing.assert_array_equal(truths[0], truths[1])
        assert np.abs(truths[0][0].astype(int) - truths[0][-1]).mean() > 1, t["factor"]
    on_disk = {str(p.relative_to(folder)) for p in (folder / "traverse").glob("*/*.png")}
    assert referenced == on_disk  # every frame the page can show is there, and no other


def test_a_missing_frame_fails_the_link_check(demo, tmp_path):
    from dcign_eval.report import page

    folder = tmp_path / "report"
    shutil.copytree(demo["result"].report.parent, folder)
    html_text = (folder / "index.html").read_text()
    page.check_links(folder, html_text)
    missing = _traversals(folder / "index.html")[2]["images"][1]["frames"][3]
    (folder / missing).unlink()
    with pytest.raises(RuntimeError, match=re.escape(missing)):
        page.check_links(folder, html_text)


SLIDERS = """return [...document.querySelectorAll('.traversal')].map(t => ({
  value: Number(t.querySelector('input[type=range]').value),
  angle: t.querySelector('output.angle').textContent,
  srcs: [...t.querySelectorAll('img[data-frames]')].map(i => i.getAttribute('src')),
  loaded: [...t.querySelectorAll('img[data-frames]')].every(i => i.complete && i.naturalWidth > 0),
  values: [...t.querySelectorAll('p.value')].map(p => p.textContent),
  controls: !t.querySelector('.controls').hidden,
  playing: t.querySelector('button.play').getAttribute('aria-pressed') === 'true'}))"""


def test_sliders_scrub_every_model_from_a_file_url(demo, tmp_path):
    folder = demo["result"].report.parent
    items = _traversals(folder / "index.html")  # what the page says frame k of each model is
    frames = [[img["frames"] for img in t["images"]] for t in items]
    with _chromium(folder, tmp_path, over_http=False) as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait

        def state():
            return driver.execute_script(SLIDERS)

        start = state()
        sliders = driver.find_elements(By.CSS_SELECTOR, ".traversal input[type=range]")
        buttons = driver.find_elements(By.CSS_SELECTOR, ".traversal button.play")
        # azimuth: the value set and an input event sent, as a script would
        driver.execute_script("arguments[0].value = '3';"
                              "arguments[0].dispatchEvent(new Event('input', {bubbles: true}))",
                              sliders[0])
        # elevation: the arrow keys, as a reader would
        sliders[1].send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
        WebDriverWait(driver, 10).until(lambda d: all(t["loaded"] for t in state()))
        azimuth, elevation, light = state()

        # Play steps the light's frames on its own; Pause stops them.
        buttons[2].click()
        WebDriverWait(driver, 10, poll_frequency=0.05).until(lambda d: state()[2]["value"] != 0)
        playing = state()[2]
        buttons[2].click()
        paused = state()
        WebDriverWait(driver, 10).until(lambda d: all(t["loaded"] for t in state()))
        time.sleep(3 / items[2]["fps"])  # three frames' time
        later = state()
        logs = driver.get_log("browser")

    assert [t["controls"] for t in start] == [True] * 3  # the script shows the controls
    assert [(t["value"], t["angle"]) for t in start] == [(0, t["angles"][0]) for t in items]
    assert [t["srcs"] for t in start] == [[f[0] for f in fs] for fs in frames]
    # every model's frame of that traversal, and only that traversal, moved to the same frame
    assert azimuth["value"] == 3 and azimuth["angle"] == "azimuth +45°"
    assert azimuth["srcs"] == [f[3] for f in frames[0]] != start[0]["srcs"]
    assert azimuth["values"] == [v[3] for v in items[0]["values"]]
    assert elevation["value"] == 2 and elevation["angle"] == "elevation 0°"
    assert elevation["srcs"] == [f[2] for f in frames[1]]
    assert light == start[2]
    assert playing["playing"]
    assert playing["srcs"] == [f[playing["value"]] for f in frames[2]]
    assert playing["angle"] == items[2]["angles"][playing["value"]]
    assert not paused[2]["playing"]
    assert (later[2]["value"], later[2]["srcs"]) == (paused[2]["value"], paused[2]["srcs"])
    assert later[:2] == [azimuth, elevation]
    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []


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
    sliders = [attrs for _, _, attrs in _links(three.index) if "data-frames" in attrs]
    assert len(sliders) == 9  # three angles, three models


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
