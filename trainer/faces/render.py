"""A deterministic CPU renderer for the face world: z-buffer rasteriser compiled with numba.

Each image is the head of one identity, rotated by azimuth (yaw, about the vertical axis) and
elevation (pitch, about the horizontal axis), seen by an orthographic camera looking down -z, and
shaded Lambertian with per-vertex normals interpolated across triangles (Gouraud-free Phong-style
normals) from one directional light plus a little ambient, on a black background: the look of
the paper's Basel Face Model renders. Rendering happens at ``SUPERSAMPLE`` x the output size and is
box-filtered down, which anti-aliases the silhouette.

Conventions (the tests check them):
* azimuth > 0 turns the face towards the image's right (the nose moves right);
* elevation > 0 tilts the face up (the nose moves up);
* light > 0 puts the light on the image's right (the right half is brighter); the light's
  elevation is fixed at ``LIGHT_ELEVATION`` degrees above the camera's horizontal plane.

The same inputs give the same bytes on the same machine: every image is computed by one thread
in a fixed order, whatever the thread count.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from trainer.errors import DcignError
from trainer.faces.head import load_head

AZIMUTH_RANGE = (-90.0, 90.0)
ELEVATION_RANGE = (-30.0, 30.0)
LIGHT_RANGE = (-80.0, 80.0)
LIGHT_ELEVATION = 15.0
AMBIENT = 0.12
SUPERSAMPLE = 2
VIEW_HALF_WIDTH = 1.12  # head units either side of eye level (crown at +1, chin near -1)
FACTOR_RANGES = {"azimuth": AZIMUTH_RANGE, "elevation": ELEVATION_RANGE, "light": LIGHT_RANGE}


@numba.njit(cache=True, fastmath=False)
def _vertex_normals(verts, faces):
    normals = np.zeros_like(verts)
    for t in range(faces.shape[0]):
        a, b, c = faces[t, 0], faces[t, 1], faces[t, 2]
        e1 = verts[b] - verts[a]
        e2 = verts[c] - verts[a]
        n0 = e1[1] * e2[2] - e1[2] * e2[1]
        n1 = e1[2] * e2[0] - e1[0] * e2[2]
        n2 = e1[0] * e2[1] - e1[1] * e2[0]
        for v in (a, b, c):  # area-weighted: the cross product's length is twice the area
            normals[v, 0] += n0
            normals[v, 1] += n1
            normals[v, 2] += n2
    for v in range(normals.shape[0]):
        norm = math.sqrt(normals[v, 0] ** 2 + normals[v, 1] ** 2 + normals[v, 2] ** 2)
        if norm > 0:
            normals[v] /= norm
    return normals


@numba.njit(cache=True, fastmath=False)
def _render_one(verts, normals, faces, albedo, rot, light, size, half_width, ambient, out):
    """Rasterise one head into ``out`` (size, size) float32 intensities in [0, 1]."""
    nv = verts.shape[0]
    sx = np.empty(nv, np.float32)
    sy = np.empty(nv, np.float32)
    sz = np.empty(nv, np.float32)
    shade = np.empty(nv, np.float32)
    scale = size / (2.0 * half_width)
    for v in range(nv):
        x = rot[0, 0] * verts[v, 0] + rot[0, 1] * verts[v, 1] + rot[0, 2] * verts[v, 2]
        y = rot[1, 0] * verts[v, 0] + rot[1, 1] * verts[v, 1] + rot[1, 2] * verts[v, 2]
        z = rot[2, 0] * verts[v, 0] + rot[2, 1] * verts[v, 1] + rot[2, 2] * verts[v, 2]
        sx[v] = (x + half_width) * scale
        sy[v] = (half_width - y) * scale
        sz[v] = z
        nx = rot[0, 0] * normals[v, 0] + rot[0, 1] * normals[v, 1] + rot[0, 2] * normals[v, 2]
        ny = rot[1, 0] * normals[v, 0] + rot[1, 1] * normals[v, 1] + rot[1, 2] * normals[v, 2]
        nz = rot[2, 0] * normals[v, 0] + rot[2, 1] * normals[v, 1] + rot[2, 2] * normals[v, 2]
        lam = nx * light[0] + ny * light[1] + nz * light[2]
        # Per-vertex Lambert term, interpolated across each triangle (Gouraud shading).
        shade[v] = albedo[v] * (ambient + (1.0 - ambient) * max(lam, 0.0))
    depth = np.full((size, size), -np.inf, np.float32)
    out[:, :] = 0.0
    for t in range(faces.shape[0]):
        a, b, c = faces[t, 0], faces[t, 1], faces[t, 2]
        ax, ay, bx, by, cx, cy = sx[a], sy[a], sx[b], sy[b], sx[c], sy[c]
        # Signed area in image coordinates (y down): front faces are clockwise on screen.
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if area >= 0:
            continue  # back-facing or degenerate
        x0 = max(int(math.floor(min(ax, bx, cx) - 0.5)) + 1, 0)
        x1 = min(int(math.floor(max(ax, bx, cx) - 0.5)), size - 1)
        y0 = max(int(math.floor(min(ay, by, cy) - 0.5)) + 1, 0)
        y1 = min(int(math.floor(max(ay, by, cy) - 0.5)), size - 1)
        inv = 1.0 / area
        for py in range(y0, y1 + 1):
            fy = py + 0.5
            for px in range(x0, x1 + 1):
                fx = px + 0.5
                w0 = ((cx - bx) * (fy - by) - (cy - by) * (fx - bx)) * inv
                w1 = ((ax - cx) * (fy - cy) - (ay - cy) * (fx - cx)) * inv
                w2 = 1.0 - w0 - w1
                if w0 < 0 or w1 < 0 or w2 < 0:
                    continue
                z = w0 * sz[a] + w1 * sz[b] + w2 * sz[c]
                if z > depth[py, px]:
                    depth[py, px] = z
                    out[py, px] = w0 * shade[a] + w1 * shade[b] + w2 * shade[c]


@numba.njit(cache=True, parallel=True, fastmath=False)
def _all_vertex_normals(shapes, faces):
    normals = np.empty_like(shapes)
    for i in numba.prange(shapes.shape[0]):
        normals[i] = _vertex_normals(shapes[i], faces)
    return normals


@numba.njit(cache=True, parallel=True, fastmath=False)
def _render_batch(shapes, normals, shape_index, faces, albedo, rots, lights, size, ss,
                  half_width, ambient, images):
    n = rots.shape[0]
    big = size * ss
    for i in numba.prange(n):
        buf = np.empty((big, big), np.float32)
        _render_one(shapes[shape_index[i]], normals[shape_index[i]], faces, albedo, rots[i],
                    lights[i], big, half_width, ambient, buf)
        for y in range(size):
            for x in range(size):
                acc = 0.0
                for dy in range(ss):
                    for dx in range(ss):
                        acc += buf[y * ss + dy, x * ss + dx]
                val = acc / (ss * ss) * 255.0 + 0.5
                images[i, y, x] = np.uint8(min(max(val, 0.0), 255.0))


def rotation(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """(n, 3, 3) head rotations: yaw by azimuth about +y, then pitch by elevation about x."""
    a, e = np.radians(azimuth), np.radians(elevation)
    ca, sa, ce, se = np.cos(a), np.sin(a), np.cos(e), np.sin(e)
    one, zero = np.ones_like(a), np.zeros_like(a)
    yaw = np.stack([np.stack([ca, zero, sa], -1), np.stack([zero, one, zero], -1),
                    np.stack([-sa, zero, ca], -1)], -2)
    # Positive elevation raises the face: the nose (+z) rotates towards +y.
    pitch = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, ce, se], -1),
                      np.stack([zero, -se, ce], -1)], -2)
    return pitch @ yaw


def light_directions(light: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors towards the light, in camera coordinates (x right, y up, z to camera)."""
    la, le = np.radians(light), np.radians(LIGHT_ELEVATION)
    return np.stack([np.sin(la) * np.cos(le), np.full_like(la, np.sin(le)),
                     np.cos(la) * np.cos(le)], -1)


def _as_1d(name: str, values, n: int | None) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values))
    if arr.ndim != 1:
        raise DcignError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise DcignError(f"{name} has {len(arr)} values, identity has {n}; they must match")
    return arr


def validate_size(size) -> None:
    """Image sizes are integers in [8, 1024]; DcignError otherwise."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8 or size > 1024:
        raise DcignError(f"size must be an integer in [8, 1024], got {size!r}")


def validate_factors(identity, azimuth, elevation, light):
    """Check and convert the four factor arrays; raise DcignError naming the first bad one."""
    identity = _as_1d("identity", identity, None)
    n = len(identity)
    if identity.dtype.kind not in "iu":
        if identity.dtype.kind == "f" and np.all(np.mod(identity, 1) == 0):
            identity = identity.astype(np.int64)
        else:
            raise DcignError(f"identity must be integers, got {identity.dtype}")
    if n and identity.min() < 0:
        raise DcignError(f"identity must be >= 0, got {identity.min()}")
    out = [identity.astype(np.int64)]
    for name, values in (("azimuth", azimuth), ("elevation", elevation), ("light", light)):
        arr = _as_1d(name, values, n).astype(np.float64)
        lo, hi = FACTOR_RANGES[name]
        bad = ~np.isfinite(arr) | (arr < lo) | (arr > hi)
        if bad.any():
            raise DcignError(f"{name} {arr[bad][0]:g} is out of range [{lo:g}, {hi:g}] degrees")
        out.append(arr)
    return out


def render_faces(identity, azimuth, elevation, light, size: int = 64) -> np.ndarray:
    """Render faces: one image per row of the equal-length 1-D factor arrays.

    Args:
        identity: integer identities (>= 0); identity i is always the same head.
        azimuth: head yaw in degrees, [-90, 90]; positive turns the face to the image's right.
        elevation: head pitch in degrees, [-30, 30]; positive tilts the face up.
        light: light azimuth in degrees, [-80, 80]; positive lights the image's right side.
        size: output width and height in pixels (64 default, 150 the paper's).

    Returns:
        uint8 array (n, size, size), black background.
    """
    validate_size(size)
    identity, azimuth, elevation, light = validate_factors(identity, azimuth, elevation, light)
    n = len(identity)
    images = np.zeros((n, size, size), np.uint8)
    if n == 0:
        return images
    head = load_head()
    unique, shape_index = np.unique(identity, return_inverse=True)
    shapes = head.shapes(unique)
    rots = rotation(azimuth, elevation).astype(np.float32)
    lights = light_directions(light).astype(np.float32)
    normals = _all_vertex_normals(shapes, head.faces)
    _render_batch(shapes, normals, shape_index.astype(np.int64), head.faces, head.albedo, rots,
                  lights, int(size), SUPERSAMPLE, VIEW_HALF_WIDTH, AMBIENT, images)
    return images
