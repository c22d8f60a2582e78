"""A batched face renderer in pure torch: the GPU path of the face world.

``render_faces_torch`` gives the same images as the numba renderer ``trainer.faces.render_faces``
(same head, camera, back-face culling, Gouraud Lambert shading, ``SUPERSAMPLE`` box filter and
uint8 rounding) up to small differences: it computes in float32 where the numba kernel mixes in
float64, so samples that lie exactly on a triangle edge, or depth ties, can resolve differently,
and a grey level can round the other way. On the CPU the numba renderer stays the default and is
faster; this path exists for a GPU, where whole batches are rasterised at once.

How it works, per chunk of ``batch`` images (no Python loop over images or triangles):

1. shapes (B, V, 3) from the identity coefficients, area-weighted vertex normals (index_add over
   faces), rotation to camera space, per-vertex Lambert shade;
2. screen-space triangles (B, T); back faces and triangles covering no pixel centre are dropped;
3. triangles are bucketed by bounding-box size (1, 2, 4, 8... pixels); in each bucket every
   triangle enumerates the pixels of a k x k window anchored at its box's first pixel, keeps those
   inside its box, then those whose centre passes the edge functions;
4. depth is resolved with one ``scatter_reduce(amax)`` of int64 keys (order-preserving depth bits
   in the high word, reversed triangle index in the low word), so the nearest fragment wins and
   equal depths go to the lowest triangle index, as in the numba loop, whatever the fragment order:
   the result is deterministic on CPU and CUDA;
5. the winner's barycentrics are recomputed per pixel to interpolate the shade; the image is
   box-filtered with ``avg_pool2d`` and rounded like the numba path (x * 255 + 0.5, clamp, floor).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from trainer.errors import DcignError
from trainer.faces.head import load_head
from trainer.faces.render import (AMBIENT, SUPERSAMPLE, VIEW_HALF_WIDTH, light_directions, rotation,
                                  validate_factors, validate_size)

_INT64_MIN = torch.iinfo(torch.int64).min
DEFAULT_BATCH = {"cuda": 2048, "cpu": 64}  # images per chunk: bounds the fragment buffers


def _ordered_bits(z: torch.Tensor) -> torch.Tensor:
    """Map float32 values to int64 whose signed order is the floats' order."""
    bits = z.contiguous().view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)


def _render_chunk(verts, faces, albedo, rots, lights, big: int) -> torch.Tensor:
    """Rasterise B heads at ``big`` x ``big``; returns (B, big, big) float32 intensities."""
    b_n, n_t = verts.shape[0], faces.shape[0]
    f0, f1, f2 = faces[:, 0], faces[:, 1], faces[:, 2]

    # Area-weighted vertex normals in model space (the cross product is twice the area).
    va, vb, vc = verts[:, f0], verts[:, f1], verts[:, f2]
    fn = torch.linalg.cross(vb - va, vc - va, dim=-1)
    normals = torch.zeros_like(verts)
    for f in (f0, f1, f2):
        normals.index_add_(1, f, fn)
    norm = normals.norm(dim=-1, keepdim=True)
    normals = torch.where(norm > 0, normals / norm.clamp_min(1e-30), normals)

    rt = rots.transpose(1, 2)
    cam = torch.bmm(verts, rt)
    ncam = torch.bmm(normals, rt)
    lam = (ncam * lights[:, None, :]).sum(-1)
    shade = albedo[None, :] * (AMBIENT + (1.0 - AMBIENT) * lam.clamp_min(0.0))  # (B, V)
    scale = big / (2.0 * VIEW_HALF_WIDTH)
    sx = (cam[..., 0] + VIEW_HALF_WIDTH) * scale
    sy = (VIEW_HALF_WIDTH - cam[..., 1]) * scale
    sz = cam[..., 2]

    ax, ay, az = sx[:, f0], sy[:, f0], sz[:, f0]  # (B, T) each
    bx, by, bz = sx[:, f1], sy[:, f1], sz[:, f1]
    cx, cy, cz = sx[:, f2], sy[:, f2], sz[:, f2]
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    lo_x = torch.minimum(torch.minimum(ax, bx), cx)
    hi_x = torch.maximum(torch.maximum(ax, bx), cx)
    lo_y = torch.minimum(torch.minimum(ay, by), cy)
    hi_y = torch.maximum(torch.maximum(ay, by), cy)
    x0 = (torch.floor(lo_x - 0.5).long() + 1).clamp_min(0)
    x1 = torch.floor(hi_x - 0.5).long().clamp_max(big - 1)
    y0 = (torch.floor(lo_y - 0.5).long() + 1).clamp_min(0)
    y1 = torch.floor(hi_y - 0.5).long().clamp_max(big - 1)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    extent = torch.maximum(w, h)
    keep = (area < 0) & (w > 0) & (h > 0)  # front-facing (clockwise on screen), covers a centre

    bi, ti = torch.nonzero(keep, as_tuple=True)
    ext = extent[bi, ti]
    pixels = big * big
    zbuf = torch.full((b_n * pixels,), _INT64_MIN, dtype=torch.int64, device=verts.device)
    if bi.numel():
        max_ext = int(ext.max())
        k, lower = 1, 0
        while lower < max_ext:
            sel = torch.nonzero((ext > lower) & (ext <= k), as_tuple=True)[0]
            if sel.numel():
                _scatter_bucket(zbuf, bi[sel], ti[sel], k, n_t, big, x0, y0, w, h, area,
                                (ax, ay, az, bx, by, bz, cx, cy, cz))
            lower, k = k, 2 * k

    img = torch.zeros(b_n * pixels, dtype=torch.float32, device=verts.device)
    hit = torch.nonzero(zbuf != _INT64_MIN, as_tuple=True)[0]
    if hit.numel():
        t = (n_t - 1) - (zbuf[hit] & 0xFFFFFFFF)
        b = torch.div(hit, pixels, rounding_mode="floor")
        p = hit - b * pixels
        fy = torch.div(p, big, rounding_mode="floor").float() + 0.5
        fx = (p % big).float() + 0.5
        w0, w1 = _barycentrics(fx, fy, ax[b, t], ay[b, t], bx[b, t], by[b, t], cx[b, t],
                               cy[b, t], area[b, t])
        w2 = 1.0 - w0 - w1
        img[hit] = (w0 * shade[b, f0[t]] + w1 * shade[b, f1[t]] + w2 * shade[b, f2[t]])
    return img.view(b_n, big, big)


def _barycentrics(fx, fy, ax, ay, bx, by, cx, cy, area):
    inv = 1.0 / area
    w0 = ((cx - bx) * (fy - by) - (cy - by) * (fx - bx)) * inv
    w1 = ((ax - cx) * (fy - cy) - (ay - cy) * (fx - cx)) * inv
    return w0, w1


def _scatter_bucket(zbuf, bi, ti, k, n_t, big, x0, y0, w, h, area, coords):
    """Fragments of triangles (bi, ti) whose boxes fit in k x k: scatter their keys into zbuf."""
    offs = torch.arange(k * k, device=zbuf.device)
    dy, dx = torch.div(offs, k, rounding_mode="floor"), offs % k
    tw, th = w[bi, ti], h[bi, ti]
    tri, off = torch.nonzero((dx[None, :] < tw[:, None]) & (dy[None, :] < th[:, None]),
                             as_tuple=True)
    b, t = bi[tri], ti[tri]
    px = x0[b, t] + dx[off]
    py = y0[b, t] + dy[off]
    ax, ay, az, bx, by, bz, cx, cy, cz = (c[b, t] for c in coords)
    w0, w1 = _barycentrics(px.float() + 0.5, py.float() + 0.5, ax, ay, bx, by, cx, cy, area[b, t])
    w2 = 1.0 - w0 - w1
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    z = (w0 * az + w1 * bz + w2 * cz)[inside]
    key = (_ordered_bits(z) << 32) | ((n_t - 1) - t[inside])
    pix = b[inside] * (big * big) + py[inside] * big + px[inside]
    zbuf.scatter_reduce_(0, pix, key, reduce="amax", include_self=True)


def render_faces_torch(identity, azimuth, elevation, light, size: int = 64, device=None,
                       batch: int | None = None) -> np.ndarray:
    """Render faces in batches with torch: the same images as ``render_faces`` up to small
    differences (see the module docstring).

    Args:
        identity, azimuth, elevation, light, size: as ``trainer.faces.render_faces``.
        device: torch device; default CUDA when available, else CPU.
        batch: images rasterised at once (default 2048 on CUDA, 64 on CPU); bounds memory.

    Returns:
        uint8 array (n, size, size), black background.
    """
    validate_size(size)
    identity, azimuth, elevation, light = validate_factors(identity, azimuth, elevation, light)
    device = torch.device(device if device is not None else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    if batch is None:
        batch = DEFAULT_BATCH.get(device.type, 64)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise DcignError(f"batch must be a positive integer, got {batch!r}")
    size, batch = int(size), int(batch)
    n = len(identity)
    images = np.zeros((n, size, size), np.uint8)
    if n == 0:
        return images

    head = load_head()
    unique, shape_index = np.unique(identity, return_inverse=True)
    coeffs = head.coefficients(unique).astype(np.float32)  # the per-identity CPU part
    big = size * SUPERSAMPLE
    with torch.inference_mode():
        mean = torch.as_tensor(head.vertices.reshape(1, -1), device=device)
        basis = torch.as_tensor(head.basis.reshape(head.n_directions, -1), device=device)
        faces = torch.as_tensor(head.faces, device=device).long()
        albedo = torch.as_tensor(head.albedo, device=device)
        coeffs = torch.as_tensor(coeffs, device=device)
        shape_index = torch.as_tensor(shape_index.reshape(-1), device=device)
        rots = torch.as_tensor(rotation(azimuth, elevation).astype(np.float32), device=device)
        lights = torch.as_tensor(light_directions(light).astype(np.float32), device=device)
        out = torch.empty((n, size, size), dtype=torch.uint8, device=device)
        for start in range(0, n, batch):
            sl = slice(start, min(start + batch, n))
            verts = (mean + coeffs[shape_index[sl]] @ basis).view(-1, head.vertices.shape[0], 3)
            hi = _render_chunk(verts, faces, albedo, rots[sl], lights[sl], big)
            lo = F.avg_pool2d(hi[:, None], SUPERSAMPLE)[:, 0]
            out[sl] = torch.floor((lo * 255.0 + 0.5).clamp(0.0, 255.0)).to(torch.uint8)
        images[:] = out.cpu().numpy()
    return images
