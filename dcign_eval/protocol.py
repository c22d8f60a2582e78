"""What a model is to every analysis, and :func:`load_model` for any model.

A model is any object with

* ``encode(images) -> (N, D)``: ``images`` uint8 (N, H, W) grayscale, H == W == ``image_size``;
  the codes as a numpy array or a torch tensor (the encoder's means, for a VAE);
* ``image_size: int``;

and optionally

* ``decode(z) -> (N, H, W)`` floats in [0, 1]: reconstructions, traversals and re-rendering need
  it; without it those analyses say why they are absent;
* ``latent_names: dict[str, int]``: named latents, e.g. ``{"azimuth": 0}``; without it the best
  single latent of each factor stands in;
* ``intrinsic``: the latents of the identity block (a slice or a sequence of indices), for
  recognition; by default the latents not named;
* ``name``: how tables and the page call it; by default the file, module or run directory name;
* ``fingerprint``: a string that changes whenever the model does (cache key); by default a
  digest of its codes for a fixed probe batch.

:func:`load_model` takes a run directory of our trainer, a shipped model's name, a
``path/to/file.py:factory`` or a ``package.module:factory``, and returns a :class:`Model`: the
one face of a model the analyses see. Our own runs (:class:`dcign_eval.models.LoadedModel`) are
one implementation like any other. :class:`Model` checks what the implementation returns (shape,
finiteness) and turns torch tensors into numpy arrays, so an analysis never meets a malformed
code; every problem is a :class:`trainer.errors.DcignError` with a one-line message.

A factory file is code the user chose to run; it is imported as such. Checkpoints are never
unpickled (our runs are safetensors, see :mod:`trainer.checkpoint`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from dcign_eval.models import SHIPPED, load_run, resolve
from trainer.checkpoint import WEIGHTS
from trainer.errors import DcignError

#: Image sizes a model may take (the face world renders at any of them).
SIZE_RANGE = (8, 1024)
#: Images of the probe batch every model encodes once when loaded: its latent count, an early
#: check of its output, and (for models without their own) its fingerprint.
PROBE_IMAGES = 4

_FACTORY = re.compile(r"^(?P<target>.+):(?P<factory>[A-Za-z_][A-Za-z0-9_]*)$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@runtime_checkable
class EncoderModel(Protocol):
    """The two members every model has (see the module docstring for the optional ones)."""

    image_size: int

    def encode(self, images): ...


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _as_array(value, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DcignError(f"{what} returned {type(value).__name__}, not a numeric array "
                         f"({_one_line(e)})") from None


def _indices(value, latent_dim: int, what: str) -> tuple[int, ...]:
    if isinstance(value, slice):
        return tuple(range(latent_dim)[value])
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise DcignError(f"{what} must be a slice or a sequence of latent indices, "
                         f"got {value!r}") from None
    bad = [k for k in out if not 0 <= k < latent_dim]
    if bad:
        raise DcignError(f"{what} names latent {bad[0]}, but the model has {latent_dim} "
                         f"latents (0..{latent_dim - 1})")
    return out


def probe_images(size: int) -> np.ndarray:
    """The fixed probe batch: a black image, a ramp and seeded noise, uint8 (4, size, size)."""
    rng = np.random.default_rng(20150303)  # the paper's arXiv month; any fixed seed would do
    ramp = np.broadcast_to(np.linspace(0, 255, size, dtype=np.float64), (size, size))
    return np.stack([np.zeros((size, size)), ramp.T, rng.integers(0, 256, (size, size)),
                     rng.integers(0, 256, (size, size))]).astype(np.uint8)


class Model:
    """Any model behind the one interface the analyses use.

    Args:
        implementation: the object with ``encode`` and ``image_size`` (and the optional members of
            the module docstring).
        name: how tables call it (default: its ``name``, else ``"model"``).
        source: where it came from (a run directory, a shipped name, a factory spec).

    Attributes:
        name, source, image_size, latent_dim, latent_names, intrinsic (tuple of latent indices),
        fingerprint, implementation. Any other attribute the implementation has (a run's
        ``config`` and ``path``, a DC-IGN's ``encode_posterior``) is read through.
    Raises:
        DcignError when the object lacks ``encode`` or ``image_size`` or its probe encoding is
        malformed.
    """

    def __init__(self, implementation, *, name: str | None = None, source: str | None = None):
        what = source or type(implementation).__name__
        missing = [m for m in ("encode", "image_size") if not hasattr(implementation, m)]
        if missing or not callable(getattr(implementation, "encode")):
            lacks = missing[0] if missing else "a callable encode"
            raise DcignError(f"{what} gave a {type(implementation).__name__}, which has no "
                             f"{lacks}; a model needs encode(images) -> (N, D) and image_size")
        self.implementation = implementation
        self.source = str(source or getattr(implementation, "name", None) or "model")
        self.name = str(name or getattr(implementation, "name", None) or self.source)
        size = getattr(implementation, "image_size")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) \
                or not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
            raise DcignError(f"{self.name}: image_size must be an int in "
                             f"[{SIZE_RANGE[0]}, {SIZE_RANGE[1]}], got {size!r}")
        self.image_size = int(size)
        self.latent_dim: int | None = None
        probe = self.encode(probe_images(self.image_size))
        self.latent_dim = int(probe.shape[1])
        names = getattr(implementation, "latent_names", None) or {}
        try:
            names = {str(k): int(v) for k, v in dict(names).items()}
        except (TypeError, ValueError):
            raise DcignError(f"{self.name}: latent_names must map names to latent indices, "
                             f"got {names!r}") from None
        _indices(names.values(), self.latent_dim, f"{self.name}: latent_names")
        self.latent_names = names
        intrinsic = getattr(implementation, "intrinsic", None)
        if intrinsic is None:
            named = set(names.values())
            self.intrinsic = tuple(k for k in range(self.latent_dim) if k not in named)
        else:
            self.intrinsic = _indices(intrinsic, self.latent_dim, f"{self.name}: intrinsic")
        own = getattr(implementation, "fingerprint", None)
        self.fingerprint = own if isinstance(own, str) and own else hashlib.sha256(
            b"probe-codes\0" + str(self.image_size).encode() + b"\0" +
            np.ascontiguousarray(probe).tobytes()).hexdigest()

    def __getattr__(self, attr: str) -> Any:
        # Only called for attributes Model itself lacks: read them from the implementation.
        if attr == "implementation" or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.implementation, attr)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, image_size={self.image_size}, latents={self.latent_dim})"

    @property
    def has_decode(self) -> bool:
        """Whether the model can decode (reconstructions, traversals, re-rendering)."""
        return callable(getattr(self.implementation, "decode", None))

    @property
    def has_posterior(self) -> bool:
        """Whether the model gives (mu, sd) of q(z|x) (``encode_posterior``), as a VAE does."""
        return callable(getattr(self.implementation, "encode_posterior", None))

    def _check_codes(self, codes: np.ndarray, n: int, what: str) -> np.ndarray:
        if codes.ndim != 2 or codes.shape[0] != n or (self.latent_dim is not None
                                                      and codes.shape[1] != self.latent_dim):
            dims = "D" if self.latent_dim is None else str(self.latent_dim)
            raise DcignError(f"{self.name}: {what} returned shape {tuple(codes.shape)} for {n} "
                             f"images; expected ({n}, {dims})")
        if codes.shape[1] < 1:
            raise DcignError(f"{self.name}: {what} returned no latents (shape "
                             f"{tuple(codes.shape)})")
        if not np.isfinite(codes).all():
            bad = int((~np.isfinite(codes)).any(axis=1).sum())
            raise DcignError(f"{self.name}: {what} returned non-finite values (NaN or inf) for "
                             f"{bad} of {n} images")
        return codes

    def encode(self, images) -> np.ndarray:
        """Codes (N, D) float32 of ``images`` (uint8 (N, S, S), S = ``image_size``)."""
        n = len(images)
        try:
            codes = self.implementation.encode(images)
        except DcignError:
            raise
        except Exception as e:  # the user's code: one line naming it
            raise DcignError(f"{self.name}: encode raised {_one_line(e)}") from None
        return self._check_codes(_as_array(codes, f"{self.name}: encode"), n, "encode")

    def encode_posterior(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sd) of q(z|x), each (N, D) float32; DcignError for a model without a posterior."""
        if not self.has_posterior:
            raise DcignError(f"{self.name} has no encode_posterior (the encoder's (mu, sd)); "
                             f"only a VAE-style model gives one")
        mu, sd = self.implementation.encode_posterior(images)
        n = len(images)
        return (self._check_codes(_as_array(mu, "encode_posterior"), n, "encode_posterior"),
                self._check_codes(_as_array(sd, "encode_posterior"), n, "encode_posterior"))

    def decode(self, z) -> np.ndarray:
        """Images (N, S, S) float32 in [0, 1] from codes (N, D)."""
        if not self.has_decode:
            raise DcignError(f"{self.name} has no decode; reconstructions, traversals and "
                             f"re-rendering need one")
        z = np.asarray(z, np.float32)
        try:
            images = self.implementation.decode(z)
        except DcignError:
            raise
        except Exception as e:
            raise DcignError(f"{self.name}: decode raised {_one_line(e)}") from None
        images = _as_array(images, f"{self.name}: decode")
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        expected = (len(z), self.image_size, self.image_size)
        if images.shape != expected:
            raise DcignError(f"{self.name}: decode returned shape {images.shape}; expected "
                             f"{expected}")
        if not np.isfinite(images).all():
            raise DcignError(f"{self.name}: decode returned non-finite values (NaN or inf)")
        return np.clip(images, 0.0, 1.0)


def as_model(model, name: str | None = None) -> Model:
    """``model`` as a :class:`Model`: a Model as it is, a spec through :func:`load_model`, any
    other object wrapped."""
    if isinstance(model, Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    return Model(model, name=name)


def default_name(spec: str | os.PathLike) -> str:
    """How a spec is named when its model has no ``name``: a run directory's or a file's stem, a
    module's last part, a shipped model's name."""
    text = str(spec)
    match = _FACTORY.match(text)
    if match and not Path(text).exists():
        target = match["target"]
        return Path(target).stem if target.endswith(".py") else target.rsplit(".", 1)[-1]
    path = Path(text)
    if path.name == WEIGHTS:
        path = path.parent
    return path.resolve().name if path.name in ("", ".", "..") else path.name


def _import_file(path: Path, spec: str):
    if not path.is_file():
        raise DcignError(f"no model file {path} (from {spec!r})")
    module_name = "dcign_eval_model_" + hashlib.sha256(str(path.resolve()).encode()
                                                      ).hexdigest()[:12]
    if module_name in sys.modules:
        return sys.modules[module_name]
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up
    try:
        loader_spec.loader.exec_module(module)
    except BaseException as e:
        del sys.modules[module_name]
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise DcignError(f"cannot import {path}: {_one_line(e)}") from None
    return module


def _import_module(name: str, spec: str):
    if not _MODULE.match(name):
        raise DcignError(f"no model {spec!r}: not a run directory, a shipped model "
                         f"({', '.join(SHIPPED)}), path/to/file.py:factory or "
                         f"package.module:factory")
    try:
        return importlib.import_module(name)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise DcignError(f"cannot import {name} (from {spec!r}): {_one_line(e)}") from None


def load_factory(spec: str) -> Model:
    """Import ``path/to/file.py:factory`` or ``package.module:factory``, call the factory with no
    arguments and wrap what it returns."""
    match = _FACTORY.match(spec)
    if not match:
        raise DcignError(f"{spec!r} is not path/to/file.py:factory nor package.module:factory")
    target, factory_name = match["target"], match["factory"]
    module = (_import_file(Path(target), spec) if target.endswith(".py") or "/" in target
              or os.sep in target else _import_module(target, spec))
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise DcignError(f"{target} has no factory {factory_name!r} (a function returning the "
                         f"model)")
    try:
        implementation = factory()
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise DcignError(f"{spec} raised {_one_line(e)}") from None
    return Model(implementation, name=getattr(implementation, "name", None) or
                 default_name(spec), source=spec)


def load_model(spec: str | os.PathLike, device: str = "cpu") -> Model:
    """Load any model for analysis.

    Args:
        spec: a run directory (or its ``model.safetensors``), a shipped model's name ("dcign",
            "vae"), ``path/to/file.py:factory`` or ``package.module:factory`` (the factory is
            called with no arguments and returns the model).
        device: where our own runs compute ("cpu", "cuda", ...); a factory chooses its own.
    Returns:
        a :class:`Model`.
    Raises:
        DcignError with a one-line message: a missing or foreign run directory, a factory that
        fails to import or raises, an object without ``encode`` or ``image_size``, an ``encode``
        that returns the wrong shape or non-finite values.
    """
    text = str(spec)
    if Path(text).exists() or text in SHIPPED or not _FACTORY.match(text):
        run = load_run(resolve(spec), device)
        return Model(run, name=default_name(spec), source=text)
    return load_factory(text)


def load_models(specs: Sequence[str | os.PathLike], device: str = "cpu") -> list[Model]:
    """:func:`load_model` of each spec; names made unique (``name (2)``) so tables can key by
    them."""
    return unique_names([load_model(s, device) for s in specs])


def unique_names(models: Sequence[Model]) -> list[Model]:
    """``models`` with repeated names made unique in place (``name (2)``, ...), so tables can key
    by name."""
    seen: dict[str, int] = {}
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name} ({seen[m.name]})"
    return list(models)
