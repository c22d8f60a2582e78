#!/usr/bin/env python
"""A blind lineup for a person: can you tell which face a reconstruction is of?

The report's lineup asks a pixel distance; this asks you. `make` writes sheets of rows: a model's
reconstruction of a held-out face, then (default) 5 faces rendered at its pose and light, its own
identity among them at a random place, the others drawn at random. The answers go to key.json:
do not open it. Write down a choice number per row, then `score`:

    python scripts/blind_lineup.py make dcign --out out/blind-dcign
    python scripts/blind_lineup.py score out/blind-dcign 3,1,4,1,5,2,2,3,4,1,5,2 --reader ann
    python scripts/blind_lineup.py summary out/blind-*     # or a folder of such folders

`--reader` keeps the scored reading in the folder (readings.json, one entry per reader);
`summary` pools the readings of several folders by model and probe: right answers over rows,
against guessing.

`--control` shows instead the true face at another pose and light: how well a person tells this
face world's identities apart at all, the bar a reconstruction can be held to.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from dcign_eval.lineup import (blind_test, guessing_p, lineup, plot_blind_test,
                               score_blind_test)
from dcign_eval.protocol import load_model
from dcign_eval.reconstruction import held_out_faces, reconstructions
from trainer.errors import ArgumentParser, DcignError, run_main
from trainer.io import atomic_write_bytes, atomic_write_json

KEY = "key.json"
READINGS = "readings.json"
ROWS_PER_SHEET = 6


def make(args) -> None:
    model = load_model(args.model)
    faces = held_out_faces(args.faces, args.seed)
    rec = reconstructions([model], faces)
    result = lineup(rec)
    probes = rec.decoded[model.name]
    if args.control:
        from trainer.faces import render_faces

        other = held_out_faces(args.faces, args.seed + 1)  # the same identities' own draws differ
        probes = render_faces(faces["identity"], other["azimuth"], other["elevation"],
                              other["light"], size=model.image_size).astype(np.float32) / 255
    test = blind_test(result, probes, rows=args.rows, choices=args.choices, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    sheets = []
    for n, first in enumerate(range(0, args.rows, ROWS_PER_SHEET), start=1):
        png = io.BytesIO()
        plot_blind_test(test, first, ROWS_PER_SHEET).savefig(png, format="png", dpi=100)
        atomic_write_bytes(args.out / f"sheet-{n}.png", png.getvalue())
        sheets.append(f"sheet-{n}.png")
    atomic_write_json(args.out / KEY, {
        "model": args.model, "probe": "true face at another pose" if args.control
        else "reconstruction", "choices": args.choices, "seed": args.seed,
        "faces": args.faces, "answers": test.answers,
        "identities": [int(faces["identity"][i]) for i in test.faces]})
    print(f"wrote {', '.join(sheets)} in {args.out}: pick a choice number per row, then "
          f"`python scripts/blind_lineup.py score {args.out} N,N,...` ({args.rows} numbers); "
          f"do not open {KEY}")


def read_key(folder: Path) -> dict:
    try:
        key = json.loads((folder / KEY).read_text())
        key["answers"], key["choices"] = [int(a) for a in key["answers"]], int(key["choices"])
        key["model"], key["probe"] = str(key["model"]), str(key["probe"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DcignError(f"{folder / KEY} is not a blind lineup's key ({e})") from None
    return key


def read_readings(folder: Path) -> dict:
    """{reader: reading} kept by `score --reader`; {} when nobody has been recorded."""
    path = folder / READINGS
    if not path.exists():
        return {}
    try:
        readings = json.loads(path.read_text())
        if not all(isinstance(r["right"], int) and isinstance(r["rows"], int)
                   for r in readings.values()):
            raise TypeError("a reading without right and rows counts")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DcignError(f"{path} is not a blind lineup's readings ({e})") from None
    return readings


def score(args) -> None:
    key = read_key(args.dir)
    answers, choices = key["answers"], key["choices"]
    try:
        given = [int(a) for a in args.answers.replace(" ", "").split(",")]
    except ValueError:
        raise DcignError(f"answers must be comma-separated choice numbers, got "
                         f"{args.answers!r}") from None
    s = score_blind_test(answers, given, choices)
    print(f"{key['model']} ({key['probe']}): {s['right']} of {s['rows']} right; guessing "
          f"gets {s['chance']:.1f} on average (one-sided binomial p = {s['p']:.3g}); "
          f"answers were {','.join(map(str, answers))}")
    if args.reader:
        readings = read_readings(args.dir)
        readings[args.reader] = {"given": given, "right": s["right"], "rows": s["rows"]}
        atomic_write_json(args.dir / READINGS, readings)
        print(f"kept as {args.reader}'s reading in {args.dir / READINGS} "
              f"({len(readings)} reader{'s' if len(readings) != 1 else ''})")


def lineup_folders(paths: list[Path]) -> list[Path]:
    """Each path is a test's folder, or a folder of tests' folders (one level down)."""
    folders = []
    for path in paths:
        if (path / KEY).is_file():
            folders.append(path)
        elif path.is_dir() and (inner := sorted(p.parent for p in path.glob(f"*/{KEY}"))):
            folders.extend(inner)
        else:
            raise DcignError(f"{path} is neither a blind lineup's folder nor a folder of them")
    return folders


def summary(args) -> None:
    """Pool every recorded reading by (model, probe)."""
    import pandas as pd

    rows = []
    for folder in lineup_folders(args.dirs):
        key = read_key(folder)
        readings = read_readings(folder)
        if not readings:
            raise DcignError(f"{folder} has no recorded readings (score it with --reader NAME)")
        for reader, r in readings.items():
            rows.append({"model": key["model"], "probe": key["probe"], "choices": key["choices"],
                         "reader": reader, "right": r["right"], "rows": r["rows"]})
    df = pd.DataFrame(rows)
    table = []
    for (model, probe, choices), g in df.groupby(["model", "probe", "choices"], sort=False):
        right, n = int(g["right"].sum()), int(g["rows"].sum())
        table.append({"model": model, "probe": probe, "readers": g["reader"].nunique(),
                      "right": right, "rows": n, "rate": right / n, "chance": 1 / choices,
                      "p": guessing_p(right, n, choices)})
    print(pd.DataFrame(table).to_string(index=False, float_format=lambda x: f"{x:.3g}"))


def main() -> None:
    p = ArgumentParser(description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write the sheets and the sealed key")
    m.add_argument("model", help="run directory or shipped name")
    m.add_argument("--out", type=Path, required=True, help="folder for the sheets and key.json")
    m.add_argument("--rows", type=int, default=12, help="faces to identify")
    m.add_argument("--choices", type=int, default=5, help="candidates per face")
    m.add_argument("--faces", type=int, default=64, help="the lineup's held-out faces, 2..64")
    m.add_argument("--seed", type=int, default=0, help="which faces, choices and order")
    m.add_argument("--control", action="store_true",
                   help="show the true face at another pose and light, not a reconstruction")
    s = sub.add_parser("score", help="score your answers against the key")
    s.add_argument("dir", type=Path, help="the folder `make` wrote")
    s.add_argument("answers", help="comma-separated choice numbers, one per row")
    s.add_argument("--reader", help="keep this reading under this name in the folder's "
                   f"{READINGS}")
    t = sub.add_parser("summary", help="pool the recorded readings of several folders")
    t.add_argument("dirs", type=Path, nargs="+", help="folders `make` wrote and `score --reader` "
                   "recorded, or folders holding such folders")
    args = p.parse_args()
    {"make": make, "score": score, "summary": summary}[args.command](args)


if __name__ == "__main__":
    run_main(main)
