"""Time the metric suite against disentanglement_lib's timings (metrics.md).

Inputs as the reference timings: the identity code on synthetic data whose observations are the
factor indices (factor sizes [3, 6, 40, 32, 32]), the unsupervised_study_v1 sample sizes
(10,000 points; 5,000 test). The whole suite runs once through ``evaluate_timed`` (one code cache
shared by all metrics, DCI in its default fast mode); each metric's seconds are printed next to
the reference's range, with the totals and their ratio. Goal: total <= 1/5 of the reference.

    .venv/bin/python bench/bench_metrics.py            # the suite as the report runs it
    .venv/bin/python bench/bench_metrics.py --dci gbt  # with the faithful DCI (about a minute+)
    .venv/bin/python bench/bench_metrics.py --no-cache # encode every sampled point afresh
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from dcign_eval.metrics import METRIC_KEYS, evaluate_timed  # noqa: E402
from dcign_eval.metrics.synthetic import SyntheticFactors  # noqa: E402

# metric group -> (our keys, reference seconds low, high) from metrics.md
# ("Speed of the reference on this machine (2 cores, 10,000 points)").
GROUPS = {
    "BetaVAE": (["beta_vae"], 1.0, 2.0),
    "FactorVAE": (["factor_vae"], 0.6, 0.6),
    "MIG": (["mig"], 0.1, 0.3),
    "SAP": (["sap", "sap_continuous"], 0.3, 1.3),
    "Modularity / explicitness": (["modularity", "explicitness"], 1.0, 6.0),
    "IRS": (["irs"], 0.1, 0.1),
    "DCI": (["dci_disentanglement", "dci_completeness", "dci_informativeness"], 66.0, 264.0),
    "Unsupervised (TC, MI)": (["gaussian_total_correlation", "mutual_info"], None, None),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dci", choices=["fast", "gbt"], default="fast", help="DCI mode")
    parser.add_argument("--no-cache", action="store_true", help="encode every sampled point")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = SyntheticFactors()
    start = time.perf_counter()
    values, seconds = evaluate_timed(data, lambda x: x, seed=args.seed, dci_mode=args.dci,
                                     cache=not args.no_cache)
    wall = time.perf_counter() - start

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
    print(f"{'total (all metrics)':28s} {total:8.2f}   (wall {wall:.2f} s)")
    print(f"{'total (reference metrics)':28s} {compared:8.2f} {total_low:g}-{total_high:g}")
    print(f"ratio ours / reference: {total / total_low:.3f} of the low end, "
          f"{total / total_high:.3f} of the high end (goal <= 0.2)")
    return 0 if total <= 0.2 * total_low else 1


if __name__ == "__main__":
    raise SystemExit(main())
