"""Shared helpers of the metric modules: sampling codes through a grid cache, input validation,
the histogram discretiser and vectorised discrete mutual information.

Layout: codes are (N, D) arrays (one row per observation), factors are (N, F) integer grid
indices. (disentanglement_lib keeps them transposed, (D, N) and (F, N).)
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import sparse
from threadpoolctl import threadpool_limits

from trainer.errors import DcignError

#: A latent whose peak-to-peak range is at most this fraction of its largest magnitude is
#: constant. All-equal values have a range of exactly 0, whatever rounding their mean has.
CONSTANT_RTOL = 1e-12


# --------------------------------------------------------------------------------------------
# Random state and validation


def as_generator(random_state) -> np.random.Generator:
    """A ``np.random.Generator`` from a Generator (returned as is), an int seed, a SeedSequence
    or None (fresh entropy: not reproducible)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(random_state)
    raise DcignError(f"random_state must be a numpy Generator, an int seed or None, "
                     f"got {type(random_state).__name__}")


def sk_seed(random_state: np.random.Generator) -> int:
    """An int seed for a scikit-learn estimator, drawn from ``random_state``."""
    return int(random_state.integers(2**31 - 1))


def single_threaded():
    """Context limiting BLAS / OpenMP pools to one thread, for small scikit-learn fits: on two
    shared cores their thread pools spin and make a 0.6 s logistic regression take 2.5 s. The
    metrics parallelise explicitly (``n_jobs``) where it pays."""
    return threadpool_limits(limits=1)


def check_codes(codes, name: str = "codes", min_rows: int = 1) -> np.ndarray:
    """``codes`` as a finite (N, D) float64 array; DcignError naming the problem otherwise."""
    if hasattr(codes, "detach"):  # a torch tensor
        codes = codes.detach().cpu().numpy()
    try:
        codes = np.asarray(codes, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DcignError(f"{name} must be a numeric (N, D) array: {e}") from None
    if codes.ndim != 2:
        raise DcignError(f"{name} must be a 2-D (N, D) array, got shape {codes.shape}")
    if codes.shape[0] < min_rows or codes.shape[1] < 1:
        raise DcignError(f"{name} must have at least {min_rows} rows and 1 column, "
                         f"got shape {codes.shape}")
    finite = np.isfinite(codes)
    if not finite.all():
        bad_rows = int((~finite).any(axis=1).sum())
        kind = "NaN" if np.isnan(codes).any() else "inf"
        raise DcignError(f"codes contain NaN or inf ({kind} in {bad_rows} of {codes.shape[0]} "
                         f"rows of {name}); the metrics need finite codes")
    return codes


def check_factors(factors, num_rows: int | None = None, name: str = "factors") -> np.ndarray:
    """``factors`` as an (N, F) int64 array of non-negative grid indices (a 1-D array is one
    factor)."""
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2 or factors.shape[1] < 1:
        raise DcignError(f"{name} must be a 2-D (N, F) array, got shape {factors.shape}")
    if factors.dtype.kind not in "iub":
        if factors.dtype.kind != "f" or not np.all(np.isfinite(factors)) \
                or not np.all(factors == np.round(factors)):
            raise DcignError(f"{name} must be integer grid indices, got dtype {factors.dtype}")
    factors = factors.astype(np.int64)
    if factors.size and factors.min() < 0:
        raise DcignError(f"{name} must be non-negative grid indices, got min {factors.min()}")
    if num_rows is not None and factors.shape[0] != num_rows:
        raise DcignError(f"{name} has {factors.shape[0]} rows but the codes have {num_rows}")
    return factors


def check_codes_factors(codes, factors, min_rows: int = 2):
    """Validated ``(codes (N, D) float64, factors (N, F) int64)`` with matching N."""
    codes = check_codes(codes, min_rows=min_rows)
    return codes, check_factors(factors, codes.shape[0])


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DcignError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def constant_dims(codes: np.ndarray) -> np.ndarray:
    """(D,) bool: latents that are constant (range <= CONSTANT_RTOL x largest magnitude)."""
    if codes.shape[0] == 0:
        return np.ones(codes.shape[1], bool)
    ptp = np.ptp(codes, axis=0)
    return ptp <= CONSTANT_RTOL * np.max(np.abs(codes), axis=0)


# --------------------------------------------------------------------------------------------
# Ground-truth data and the code cache


def check_data(data) -> list[int]:
    """Check ``data`` implements the ground-truth interface; return its factor sizes."""
    for attr in ("factor_sizes", "sample_factors", "sample_observations_from_factors"):
        if not hasattr(data, attr):
            raise DcignError(f"data must implement the ground-truth data interface "
                             f"(factor_sizes, sample_factors, sample_observations_from_factors); "
                             f"{type(data).__name__} has no {attr}")
    try:
        sizes = [int(s) for s in data.factor_sizes]
    except (TypeError, ValueError):
        raise DcignError(f"data.factor_sizes must be a list of ints, "
                         f"got {data.factor_sizes!r}") from None
    if not sizes or min(sizes) < 1:
        raise DcignError(f"data.factor_sizes must be non-empty positive ints, got {sizes}")
    return sizes


def sample_factors(data, num: int, random_state: np.random.Generator,
                   sizes: Sequence[int] | None = None) -> np.ndarray:
    """``data.sample_factors(num, random_state)`` checked to be (num, F) in-range indices."""
    sizes = check_data(data) if sizes is None else sizes
    factors = np.asarray(data.sample_factors(num, random_state))
    if factors.shape != (num, len(sizes)):
        raise DcignError(f"data.sample_factors({num}) returned shape {factors.shape}, "
                         f"expected ({num}, {len(sizes)})")
    if factors.dtype.kind not in "iu":
        factors = check_factors(factors, name="sampled factors")
    if num and (factors.min() < 0 or np.any(factors.max(axis=0) >= np.asarray(sizes))):
        raise DcignError(f"data.sample_factors returned indices outside factor_sizes {list(sizes)}")
    return factors.astype(np.int64, copy=False)


class CodeCache:
    """Codes of grid points, each distinct observation encoded once.

    Calling the cache with factors (..., F) returns their codes (..., D). A grid point seen for the
    first time is rendered (``data.sample_observations_from_factors``), encoded (``represent``) in
    batches of ``encode_batch_size`` and kept; later requests are a table look-up. This assumes the
    observation is a function of the grid point (the face world and ``SyntheticFactors`` are
    deterministic); with a noisy renderer the first rendering of a point is the one kept. The batch
    size only sets throughput: a deterministic encoder gives the same codes for any batching.

    The renderer gets its own random state, so which metric first asks for a point changes
    nothing in the factor sampling of the others.

    Args:
        data: ground-truth data (see :mod:`dcign_eval.metrics.synthetic`).
        represent: maps a batch of observations to codes (N, D) (array or torch tensor).
        encode_batch_size: observations per ``represent`` call.
        random_state: Generator (or seed) handed to the renderer.
        enabled: False encodes every requested row afresh (the reference's cost), for timing.
        max_table: largest grid indexed by a dense slot table; beyond it points are only
            de-duplicated within a request.
    """

    def __init__(self, data, represent: Callable, *, encode_batch_size: int = 256,
                 random_state=None, enabled: bool = True, max_table: int = 2**26):
        if not callable(represent):
            raise DcignError(f"represent must be callable (observations -> codes), "
                             f"got {type(represent).__name__}")
        self.data = data
        self.represent = represent
        self.factor_sizes = check_data(data)
        self.encode_batch_size = check_positive_int(encode_batch_size, "encode_batch_size")
        self.random_state = as_generator(random_state)
        self.enabled = bool(enabled)
        self.grid_size = math.prod(self.factor_sizes)
        self._slots = (np.full(self.grid_size, -1, np.int64)
                       if self.enabled and self.grid_size <= max_table else None)
        self._codes = np.zeros((0, 0))
        self._count = 0
        self.num_dims: int | None = None
        self.num_encoded = 0  # observations passed through ``represent`` so far

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        factors = np.asarray(factors)
        lead = factors.shape[:-1]
        rows = factors.reshape(-1, len(self.factor_sizes)).astype(np.int64, copy=False)
        if not self.enabled:
            return self._encode(rows).reshape(*lead, -1)
        flat = np.ravel_multi_index(tuple(rows.T), self.factor_sizes)
        if self._slots is None:  # huge grid: de-duplicate within this request only
            uniq, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
            return self._encode(rows[first])[inverse.reshape(-1)].reshape(*lead, -1)
        slots = self._slots[flat]
        missing = slots < 0
        if missing.any():
            new_flat, first = np.unique(flat[missing], return_index=True)
            codes = self._encode(rows[missing][first])
            self._append(new_flat, codes)
            slots = self._slots[flat]
        return np.take(self._codes, slots, axis=0).reshape(*lead, self.num_dims)

    def _append(self, flat: np.ndarray, codes: np.ndarray) -> None:
        need = self._count + len(flat)
        if need > self._codes.shape[0]:  # grow geometrically: amortised O(1) per point
            grown = np.empty((max(need, 2 * self._codes.shape[0], 1024), self.num_dims))
            if self._count:
                grown[: self._count] = self._codes[: self._count]
            self._codes = grown
        self._codes[self._count: need] = codes
        self._slots[flat] = np.arange(self._count, need)
        self._count = need

    def _encode(self, rows: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(rows), self.encode_batch_size):
            chunk = rows[start: start + self.encode_batch_size]
            observations = self.data.sample_observations_from_factors(chunk, self.random_state)
            codes = check_codes(self.represent(observations), name="represent(observations)")
            if codes.shape[0] != len(chunk):
                raise DcignError(f"represent returned {codes.shape[0]} codes for "
                                 f"{len(chunk)} observations")
            if self.num_dims is None:
                self.num_dims = codes.shape[1]
            elif codes.shape[1] != self.num_dims:
                raise DcignError(f"represent returned {codes.shape[1]} dims, earlier "
                                 f"{self.num_dims}")
            out.append(codes)
        self.num_encoded += len(rows)
        if not out:
            return np.zeros((0, self.num_dims or 0))
        return np.concatenate(out)


def as_cache(data, represent, cache: CodeCache | None) -> CodeCache:
    """The cache to sample through: ``cache`` if given (it must wrap ``data``), else a new one."""
    if cache is None:
        return CodeCache(data, represent)
    if not isinstance(cache, CodeCache):
        raise DcignError(f"cache must be a CodeCache, got {type(cache).__name__}")
    if cache.data is not data:
        raise DcignError("cache was built for another data set")
    return cache


def generate_batch_factor_code(data, cache: CodeCache, num_points: int,
                               random_state: np.random.Generator, batch_size: int = 16):
    """``num_points`` random grid points and their codes.

    Factors are drawn in batches of ``batch_size`` as the reference does; codes come from the
    cache (each distinct observation encoded once).

    Returns:
        codes (num_points, D) float64 and factors (num_points, F) int64.
    """
    num_points = check_positive_int(num_points, "num_points", minimum=2)
    batch_size = check_positive_int(batch_size, "batch_size")
    sizes = cache.factor_sizes
    factors = np.concatenate([
        sample_factors(data, min(batch_size, num_points - start), random_state, sizes)
        for start in range(0, num_points, batch_size)])
    return cache(factors), factors


# --------------------------------------------------------------------------------------------
# Discretisation and mutual information


def histogram_discretize(values: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin each column into ``num_bins`` equal-width bins over its own range.

    Bin edges are ``np.histogram``'s (a constant column gets the range value +- 0.5); labels are
    ``np.digitize`` against all edges but the last, so they run 1 .. num_bins and the maximum falls
    in the last bin, as in disentanglement_lib's histogram discretizer.

    Args:
        values: (N, D) array.
        num_bins: bins per column.

    Returns:
        (N, D) int64 bin labels.
    """
    values = np.asarray(values, dtype=np.float64)
    num_bins = check_positive_int(num_bins, "num_bins")
    out = np.empty(values.shape, np.int64)
    for j in range(values.shape[1]):
        edges = np.histogram_bin_edges(values[:, j], num_bins)
        out[:, j] = np.digitize(values[:, j], edges[:-1])
    return out


def _one_hot_columns(labels: np.ndarray):
    """Sparse (N, sum_j K_j) one-hot of each column's labels (relabelled 0..K_j-1), the offset of
    each column's block and each block's counts."""
    n, d = labels.shape
    blocks, sizes = [], []
    for j in range(d):
        _, inverse = np.unique(labels[:, j], return_inverse=True)
        blocks.append(inverse.reshape(-1))
        sizes.append(int(inverse.max()) + 1 if n else 0)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cols = (np.stack(blocks, 1) + offsets[:-1]).reshape(-1) if d else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(n), d)
    one_hot = sparse.csr_matrix((np.ones(n * d), (rows, cols)), shape=(n, offsets[-1]))
    counts = np.asarray(one_hot.sum(axis=0)).reshape(-1)
    return one_hot, offsets, counts


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between every column of ``a`` and every column of ``b``.

    Equal to ``sklearn.metrics.mutual_info_score(b[:, j], a[:, i])`` for each pair (the same
    plug-in estimator, negatives clipped to 0) but computed at once: all contingency tables are one
    sparse product of one-hot encodings.

    Args:
        a: (N, Da) discrete labels (any integers).
        b: (N, Db) discrete labels.

    Returns:
        (Da, Db) float64 matrix.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise DcignError(f"discrete_mutual_info needs (N, Da) and (N, Db) arrays, "
                         f"got {a.shape} and {b.shape}")
    n = a.shape[0]
    if n == 0:
        return np.zeros((a.shape[1], b.shape[1]))
    oh_a, off_a, count_a = _one_hot_columns(a)
    oh_b, off_b, count_b = _one_hot_columns(b)
    joint = (oh_a.T @ oh_b).toarray()  # every contingency table, block (i, j)
    nz = joint > 0
    terms = np.zeros_like(joint)
    # p_xy log(p_xy / (p_x p_y)) with counts: (c/n) (log c + log n - log c_x - log c_y)
    log_outer = np.log(count_a)[:, None] + np.log(count_b)[None, :]
    terms[nz] = joint[nz] / n * (np.log(joint[nz]) + math.log(n) - log_outer[nz])
    mi = np.add.reduceat(np.add.reduceat(terms, off_a[:-1], axis=0), off_b[:-1], axis=1)
    mi[np.abs(mi) < 1e-12] = 0.0
    return np.clip(mi, 0.0, None)


def discrete_entropy(labels: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each column of (N, F) discrete labels (= mutual_info_score(y, y))."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[:, None]
    out = np.zeros(labels.shape[1])
    for j in range(labels.shape[1]):
        _, counts = np.unique(labels[:, j], return_counts=True)
        if len(counts) > 1:
            p = counts / counts.sum()
            out[j] = -np.sum(p * np.log(p))
    return out


def top_two_gap(matrix: np.ndarray) -> np.ndarray:
    """Per column, the largest entry minus the second largest (0 stands in for a missing second
    when there is a single row)."""
    if matrix.shape[0] == 1:
        return matrix[0].copy()
    part = -np.partition(-matrix, 1, axis=0)
    return part[0] - part[1]
