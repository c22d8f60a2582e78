"""The maintenance scripts under scripts/ that take user input: output and one-line errors."""

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
    header, *rows = r.stdout.strip().splitlines()
    assert header.split() == ["model", "faces", "MSE", "SSIM"]
    assert [row.split()[:2] for row in rows] == [["vae", "3"], ["dcign", "3"]]
    for row in rows:
        mse, ssim = map(float, row.split()[2:])
        assert 0 < mse < 0.05 and 0 < ssim <= 1


def test_reconstruction_mse_bad_input():
    for args in (["no-such-model"], ["vae", "--faces", "0"]):
        r = run(*args)
        assert r.returncode == 1
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
