"""Time the metric suite against disentanglement_lib's timings (metrics.md).

Inputs as the reference timings: the identity code on synthetic data whose observations are the
factor indices (factor sizes [3, 6, 40, 32, 32]), the unsupervised_study_v1 sample sizes
(10,000 points; 5,000 test), and a posterior of sd 0.1 around it for the continuous MIG. The whole
suite runs once through ``evaluate_timed`` (one code cache shared by all metrics, DCI with its
default estimator); each metric's seconds are printed next to the reference's range, with the
totals and their ratio. With ``--vs-gbt`` the suite also runs as disentanglement_lib would
(DCI by scikit-learn's GBT, every sampled point encoded afresh), and the ratio of the two times is
printed. Goal: total <= 1/5 of the reference.

With ``--agreement``, DCI's estimators are compared instead, on one sample each of the sanity codes
(dcign_eval.metrics.synthetic.sanity_code) and, with ``--models``, of the shipped models' codes on
the evaluation grid: disentanglement, completeness and informativeness of each estimator, its
largest distance to ``gbt`` (disentanglement_lib's estimator) and its single-thread CPU seconds
against gbt's. GBT takes minutes per code on the shipped models' 200 latents, so its results (and
the reference-style suite time) are kept in ``--gbt-cache`` and reused for the same code, sample
size and seed.

    .venv/bin/python bench/bench_metrics.py            # the suite as the report runs it
    .venv/bin/python bench/bench_metrics.py --vs-gbt   # and against the reference-style suite
    .venv/bin/python bench/bench_metrics.py --no-cache # encode every sampled point afresh
    .venv/bin/python bench/bench_metrics.py --agreement --num-train 2000 [--models dcign vae]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

from dcign_eval.metrics import DCI_MODES, DEFAULT_DCI_MODE, METRIC_KEYS, _utils, dci, \
    evaluate_timed  # noqa: E402
from dcign_eval.metrics.synthetic import SANITY_CODES, SyntheticFactors, sanity_code  # noqa: E402

# metric group -> (our keys, reference seconds low, high) from metrics.md
# ("Speed of the reference on this machine (2 cores, 10,000 points)").
GROUPS = {
    "BetaVAE": (["beta_vae"], 1.0, 2.0),
    "FactorVAE": (["factor_vae"], 0.6, 0.6),
    "MIG": (["mig"], 0.1, 0.3),
    "MIG (continuous)": (["mig_continuous"], None, None),
    "SAP": (["sap", "sap_continuous"], 0.3, 1.3),
    "Modularity / explicitness": (["modularity", "explicitness"], 1.0, 6.0),
    "IRS": (["irs"], 0.1, 0.1),
    "DCI": (["dci_disentanglement", "dci_completeness", "dci_informativeness"], 66.0, 264.0),
    "Unsupervised (TC, MI)": (["gaussian_total_correlation", "mutual_info"], None, None),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dci", choices=DCI_MODES, default=DEFAULT_DCI_MODE, help="DCI mode")
    parser.add_argument("--no-cache", action="store_true", help="encode every sampled point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agreement", action="store_true",
                        help="compare DCI's estimators instead of timing the suite")
    parser.add_argument("--num-train", type=int, default=10000,
                        help="training points of the DCI comparison (test: 5,000)")
    parser.add_argument("--models", nargs="*", default=[],
                        help="also compare on these models' codes (e.g. dcign vae)")
    parser.add_argument("--grid-dir", default="data", help="where the evaluation grid is")
    parser.add_argument("--vs-gbt", action="store_true",
                        help="also time the suite as disentanglement_lib runs it (GBT, no cache)")
    parser.add_argument("--gbt-cache", default="out/bench-gbt",
                        help="where GBT's results are kept and reused")
    args = parser.parse_args(argv)
    if args.agreement:
        return agreement(args)

    data = SyntheticFactors()
    # One process (n_jobs=1), timed in CPU seconds as well: on shared cores the wall time
    # depends on what else runs; the CPU time much less.
    start, cpu_start = time.perf_counter(), time.process_time()
    values, seconds = evaluate_timed(data, lambda x: x, seed=args.seed, dci_mode=args.dci,
                                     cache=not args.no_cache, posterior=_posterior, n_jobs=1)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    print(f"metric suite on the identity code, factor sizes {data.factor_sizes}, 10,000 points, "
          f"DCI mode {args.dci!r}, cache {'off' if args.no_cache else 'on'}, seed {args.seed}")
    print(f"{'metric':28s} {'ours s':>8s} {'reference s':>12s}  values")
    total_low = total_high = 0.0
    compared = 0.0
    for group, (keys, low, high) in GROUPS.items():
        ours = sum(seconds[k] for k in keys)
        ref = "-" if low is None else (f"{low:g}" if low == high else f"{low:g}-{high:g}")
        shown = ", ".join(f"{k}={values[k]:.3f}" for k in keys)
        print(f"{group:28s} {ours:8.2f} {ref:>12s}  {shown}")
        if low is not None:
            total_low, total_high, compared = total_low + low, total_high + high, compared + ours
    total = sum(seconds[k] for k in METRIC_KEYS)
    print("-" * 80)
    print(f"{'total (all metrics)':28s} {total:8.2f}   (wall {wall:.2f} s, CPU {cpu:.2f} s)")
    print(f"{'total (reference metrics)':28s} {compared:8.2f} {total_low:g}-{total_high:g}")
    print(f"ratio ours / reference: {total / total_low:.3f} of the low end, "
          f"{total / total_high:.3f} of the high end (goal <= 0.2)")
    ok = total <= 0.2 * total_low
    if args.vs_gbt:
        def reference_style():
            start, cpu_start = time.perf_counter(), time.process_time()
            evaluate_timed(data, lambda x: x, seed=args.seed, dci_mode="gbt", cache=False,
                           posterior=_posterior, n_jobs=1)
            return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu_start}
        gbt = _cached(args, f"suite-gbt-nocache-seed{args.seed}", reference_style)
        print(f"suite as disentanglement_lib runs it (DCI gbt, no cache, one process): "
              f"{gbt['cpu']:.1f} CPU s (wall {gbt['wall']:.1f} s); ours {cpu:.1f} CPU s "
              f"(wall {wall:.1f} s)")
        print(f"ratio ours / disentanglement_lib-style: {cpu / gbt['cpu']:.3f} of its CPU time "
              f"(goal <= 0.2)")
        ok = ok and cpu <= 0.2 * gbt["cpu"]
    return 0 if ok else 1


def _posterior(x):
    """The bench's posterior around the identity code: the code, sd 0.1 everywhere."""
    return x, np.full(np.shape(x), 0.1)


def _cached(args, name: str, compute) -> dict:
    """``compute()``'s JSON-able result, kept in ``args.gbt_cache/name.json`` and reused."""
    path = os.path.join(args.gbt_cache, f"{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    result = compute()
    os.makedirs(args.gbt_cache, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(path + ".tmp", path)
    return result


def _dci_samples(args):
    """name -> (codes, factors, test codes, test factors): DCI's sample as the suite draws it."""
    def draw(data, represent):
        cache = _utils.CodeCache(data, represent)
        rng = np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(4,)))
        train = _utils.generate_batch_factor_code(data, cache, args.num_train, rng)
        return (*train, *_utils.generate_batch_factor_code(data, cache, 5000, rng))

    data = SyntheticFactors()
    for name in SANITY_CODES:
        yield name, draw(data, sanity_code(name, random_state=args.seed))
    if args.models:
        from dcign_eval.cache import CodedGrid, identity
        from dcign_eval.metrics.suite import evaluation_worlds, grid_codes
        from dcign_eval.protocol import load_models

        models = load_models(args.models)
        worlds = evaluation_worlds(models, args.grid_dir)
        for model in models:
            world = worlds[int(model.image_size)]
            yield model.name, draw(CodedGrid(world, grid_codes(model, world)), identity)


def agreement(args) -> int:
    """Print each DCI estimator's scores, distance to gbt and CPU seconds (one thread)."""
    print(f"DCI estimators on one sample per code: {args.num_train} training / 5,000 test "
          f"points, seed {args.seed}, one thread; |d| = largest distance to gbt over D, C, I")
    print("(lasso's I is a test R^2, the others' an accuracy)")
    print(f"{'code':12s} {'estimator':12s} {'D':>7s} {'C':>7s} {'I':>7s} {'|d|':>7s} "
          f"{'cpu s':>8s} {'gbt/this':>9s}")
    order = ["gbt"] + [m for m in DCI_MODES if m != "gbt"]
    for name, (codes, factors, codes_test, factors_test) in _dci_samples(args):
        ref = None
        for mode in order:
            def run():
                start = time.process_time()
                out = dci._compute_dci(codes, factors, codes_test, factors_test, mode=mode,
                                       random_state=args.seed, n_jobs=1)
                return {"scores": [out["disentanglement"], out["completeness"],
                                   out["informativeness_test"]],
                        "cpu": time.process_time() - start}
            result = _cached(args, f"dci-{name}-{args.num_train}-seed{args.seed}", run) \
                if mode == "gbt" else run()
            scores, cpu = np.array(result["scores"]), result["cpu"]
            if ref is None:
                ref = (scores, cpu)
            gap = np.max(np.abs(scores - ref[0]))
            print(f"{name:12s} {mode:12s} {scores[0]:7.4f} {scores[1]:7.4f} {scores[2]:7.4f} "
                  f"{gap:7.4f} {cpu:8.1f} {ref[1] / cpu:9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
