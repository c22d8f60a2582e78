"""notebooks/walkthrough.ipynb runs top to bottom (load a model, traverse, metrics, recognition).

It is executed with nbclient on two tiny untrained models (its SMALL settings), in a temporary
working directory, so it takes seconds and writes nothing into the checkout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "walkthrough.ipynb"


def _tiny_run(path: Path, named: bool) -> Path:
    import torch

    from trainer.checkpoint import latent_layout, save_checkpoint
    from trainer.model import DCIGN, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(image_size=64, latent_dim=8, width=0.0625,
                      **({} if named else {"latent_names": {}}))
    save_checkpoint(path, model=DCIGN(cfg),
                    config={"model": cfg.to_dict(),
                            "train": {"mode": "monovariant" if named else "vae", "steps": 0,
                                      "width": 0.0625},
                            "latent_layout": latent_layout(cfg), "data": {}},
                    state={"step": 0, "status": "finished"})
    return path


def test_walkthrough_notebook_executes(tmp_path, monkeypatch):
    missing = []
    for module in ("nbclient", "nbformat", "ipykernel"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        pytest.skip(f"executing the notebook needs {', '.join(missing)} (pip install -e '.[dev]')")
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DCIGN_EVAL_NOTEBOOK_MODEL", str(_tiny_run(tmp_path / "dcign", True)))
    monkeypatch.setenv("DCIGN_EVAL_NOTEBOOK_BASELINE", str(_tiny_run(tmp_path / "vae", False)))
    monkeypatch.setenv("DCIGN_EVAL_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("DCIGN_EVAL_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("DCIGN_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # DCI fits its factors in the kernel itself: starting joblib's worker processes there would
    # take longer than the tiny fits (the parallel fits are tested in the metrics' own tests)
    monkeypatch.setenv("JOBLIB_MULTIPROCESSING", "0")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend
    work = tmp_path / "work"
    work.mkdir()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()

    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert list((tmp_path / "out" / "traverse").glob("walkthrough-light.gif"))
    assert (tmp_path / "out" / "recognition" / "summary.csv").is_file()
    assert list((work / "data").glob("eval-2id-64px"))  # the metrics grid, under the cwd's data/
    texts = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                    for cell in nb.cells for o in cell.get("outputs", []))
    assert "spearman_light" in texts and "dcign: intrinsic block" in texts
