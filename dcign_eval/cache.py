"""The one cache of encoded codes: what a model's encoder made of a batch of images, kept on disk.

Every analysis encodes through :func:`encode_cached`, so a set of images (the evaluation grid, the
calibration faces, the recognition probes) is encoded once per model across commands and
reports. An entry is keyed by the model's fingerprint (:attr:`dcign_eval.protocol.Model.fingerprint`:
its weights' sha256 for our runs, a digest of its codes for a probe batch otherwise) and the
sha256 of the images' bytes and shape:

    $DCIGN_EVAL_CACHE/codes/<fingerprint>/<images>.npy      (default ~/.cache/dcign-eval)

Each entry is written to a temporary file and renamed into place (:mod:`trainer.io`), so a reader
never sees a partial file, and two commands encoding the same images at once write the same bytes:
whichever rename lands last, the entry is whole. A damaged or foreign entry is encoded again. A
cache that cannot be written only makes the next command slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np

from trainer.io import atomic_write_bytes

#: ``progress(total, description)``: a context manager yielding ``advance(n)``, e.g.
#: :func:`dcign_eval.console.progress_bar`.
ProgressFactory = Callable[[int, str], ContextManager[Callable[[int], None]]]

#: Images per ``encode`` call: bounds the memory of one call, whatever the set's size.
ENCODE_CHUNK = 256


def default_cache_dir() -> Path:
    """``$DCIGN_EVAL_CACHE`` or ``~/.cache/dcign-eval``."""
    return Path(os.environ.get("DCIGN_EVAL_CACHE") or "~/.cache/dcign-eval").expanduser()


def images_digest(images: np.ndarray) -> str:
    """sha256 of an image array's shape, dtype and bytes."""
    images = np.ascontiguousarray(images)
    h = hashlib.sha256(f"{images.shape}{images.dtype.str}".encode())
    h.update(memoryview(images).cast("B"))
    return h.hexdigest()


def entry_path(model, images: np.ndarray, cache_dir: str | os.PathLike | None = None,
               posterior: bool = False) -> Path:
    """Where the codes of ``images`` by ``model`` (``posterior``: its [mu | sd]) are kept."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    suffix = "-posterior" if posterior else ""
    return root / "codes" / str(model.fingerprint)[:32] / \
        f"{images_digest(images)[:32]}{suffix}.npy"


def _read(path: Path, n: int, dim: int | None) -> np.ndarray | None:
    with contextlib.suppress(OSError, ValueError, EOFError):
        codes = np.load(path, allow_pickle=False)
        if codes.ndim == 2 and len(codes) == n and codes.dtype == np.float32 \
                and (dim is None or codes.shape[1] == dim) and np.isfinite(codes).all():
            return codes
    return None  # missing, damaged or foreign: encode again


def encode_cached(model, images, *, cache_dir: str | os.PathLike | None = None,
                  cache: bool = True, progress: ProgressFactory | None = None,
                  description: str = "encoding", posterior: bool = False) -> np.ndarray:
    """``model.encode(images)`` in chunks of :data:`ENCODE_CHUNK`, through the cache.

    Args:
        model: a :class:`dcign_eval.protocol.Model` (anything with ``encode`` and a
            ``fingerprint``).
        images: uint8 (N, S, S).
        cache_dir: the cache's root (default :func:`default_cache_dir`).
        cache: False encodes afresh and writes nothing.
        progress: a progress-bar factory, used only when encoding.
        description: the progress bar's label.
        posterior: encode with ``model.encode_posterior`` instead: the posterior's means and
            standard deviations side by side.
    Returns:
        float32 (N, D) codes, or (N, 2D) [mu | sd] with ``posterior``.
    """
    images = np.asarray(images)
    dim = getattr(model, "latent_dim", None)
    if posterior and dim is not None:
        dim *= 2
    path = entry_path(model, images, cache_dir, posterior) if cache else None
    if path is not None:
        codes = _read(path, len(images), dim)
        if codes is not None:
            return codes
    chunks = []
    bar = progress(len(images), description) if progress else contextlib.nullcontext(None)
    with bar as advance:
        for start in range(0, len(images), ENCODE_CHUNK):
            chunk = images[start:start + ENCODE_CHUNK]
            coded = np.hstack(model.encode_posterior(chunk)) if posterior else model.encode(chunk)
            chunks.append(np.asarray(coded, dtype=np.float32))
            if advance:
                advance(len(chunk))
    codes = np.concatenate(chunks) if chunks else np.zeros((0, dim or 0), np.float32)
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, codes, allow_pickle=False)
        with contextlib.suppress(OSError):
            atomic_write_bytes(path, buf.getvalue())
    return codes


class CodedGrid:
    """A factor grid whose observations are a model's codes: ground-truth data (see
    :mod:`dcign_eval.metrics.synthetic`) over precomputed codes, so the metrics sample the grid
    without encoding again (``represent`` is the identity).

    Args:
        world: a face-world grid with its data set (:class:`trainer.faces.FaceWorld`).
        codes: (N, D) codes of ``world.dataset.images``, row i the image of flat index i.
    """

    def __init__(self, world, codes: np.ndarray):
        self.world = world
        self.codes = np.asarray(codes)
        self.factor_sizes = list(world.factor_sizes)
        self.factor_names = list(getattr(world, "factor_names", []))

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, num: int, random_state: np.random.Generator) -> np.ndarray:
        return self.world.sample_factors(num, random_state)

    def sample_observations_from_factors(self, factors: np.ndarray, random_state=None
                                         ) -> np.ndarray:
        return self.codes[self.world.flat_index(np.asarray(factors))]


def identity(codes: np.ndarray) -> np.ndarray:
    """The ``represent`` of a :class:`CodedGrid`: its observations are already codes."""
    return codes
