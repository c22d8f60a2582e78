"""Where the page came from: package version, git commit, seeds, hardware, settings, caches and
the time each section took."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from dcign_eval import __version__
from dcign_eval.protocol import Model
from dcign_eval.report.page import read_json
from dcign_eval.report.settings import ReportSettings


def git_commit(repo: str | os.PathLike | None = None) -> tuple[str, bool | None]:
    """(``git rev-parse HEAD`` of the source tree, whether tracked files differ from it), or
    ("unknown", None) outside a git checkout. Reads only: no index refresh, no lock."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, env=env)
        if head.returncode != 0:
            return "unknown", None
        status = subprocess.run(["git", "-C", str(repo), "--no-optional-locks", "status",
                                 "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, timeout=20, env=env)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return head.stdout.strip(), dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def hardware() -> dict[str, str]:
    """Where the report ran: OS, CPU model and cores, memory, accelerator."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"platform": platform.platform(), "cpu": cpu,
            "cpu cores (os.cpu_count)": str(os.cpu_count())}
    with contextlib.suppress(AttributeError, OSError, ValueError):
        if hasattr(os, "sched_getaffinity"):
            info["cores available to this process"] = str(len(os.sched_getaffinity(0)))
    with contextlib.suppress(AttributeError, OSError, ValueError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        info["memory"] = f"{memory / 2 ** 30:.1f} GiB"
    info["torch threads"] = str(torch.get_num_threads())
    if torch.cuda.is_available():
        info["accelerator"] = ", ".join(torch.cuda.get_device_name(i)
                                        for i in range(torch.cuda.device_count()))
    else:
        info["accelerator"] = "none (CPU only)"
    return info


def provenance(models: Sequence[Model], seed: int, settings: ReportSettings,
               section_seconds: Mapping[str, float], *, preset_name: str | None = None,
               command: str | None = None, caches: Mapping[str, str] | None = None) -> dict:
    """Everything needed to say where the page came from: versions, git commit, seeds, hardware,
    settings, caches and the time each section took."""
    import matplotlib
    import sklearn
    import torch

    commit, dirty = git_commit()
    seeds = {"report (every random choice of the analyses)": int(seed)}
    for m in models:
        config = getattr(m, "config", {}) or {}
        if not config:
            continue  # an outside model: its training is its own
        seeds[f"training of {m.name}"] = config.get("train", {}).get("seed", "unknown")
        data = config.get("data", {}).get("path")
        manifest = read_json(Path(data) / "train" / "manifest.json") if data else {}
        if "seed" in manifest:
            seeds[f"training data of {m.name}"] = manifest["seed"]
    return {
        "package": f"dcign-eval {__version__}",
        "git commit": commit + ("" if dirty is None else
                                " (with uncommitted changes)" if dirty else " (clean)"),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command or "build_report()",
        "preset": preset_name or "custom",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "pandas": pd.__version__,
                     "scikit-learn": sklearn.__version__, "matplotlib": matplotlib.__version__},
        "seeds": seeds,
        "models": {m.name: {"source": m.source, "fingerprint": m.fingerprint,
                            "image size": str(m.image_size), "latents": str(m.latent_dim)}
                   for m in models},
        "hardware": hardware(),
        "settings": settings.to_dict(),
        "caches": dict(caches or {}),
        "section seconds": {k: round(float(v), 2) for k, v in section_seconds.items()},
    }
