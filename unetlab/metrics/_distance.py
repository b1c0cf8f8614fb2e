"""Boundaries, square erosion and exact nearest-boundary distances on batches of bool masks.

Everything here is plain torch on the input's device (CPU or CUDA): no NumPy round trip, no
chamfer approximation. Outside the image counts as background throughout.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

# Radius of the local window search that precedes the exhaustive search (see
# `surface_sq_distances`). Most boundary pixels of a prediction lie a few pixels from the other
# boundary, so the window settles nearly all of them cheaply.
WINDOW_RADIUS = 3
# Work of the column transform per pixel, relative to one query-pixel pair of the pairwise search
# (measured on CPU); picks the cheaper exact search in `_exhaustive_search`.
COLUMN_SEARCH_COST = 16
# Upper bound on the elements of one temporary (query x candidate) tensor: about 16 MB in float32.
CHUNK_ELEMENTS = 1 << 22


def inner_boundary(mask: Tensor) -> Tensor:
    """Boundary pixels ``∂m = m AND NOT erode(m)``, erosion by the 4-connected 3x3 cross.

    Args:
        mask: bool (N, H, W).

    Returns:
        bool (N, H, W): foreground pixels with a 4-neighbour in the background or outside the image.
    """
    padded = F.pad(mask, (1, 1, 1, 1))
    interior = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    return mask & ~interior


def erode_square(mask: Tensor, radius: int) -> Tensor:
    """Erosion by the (2r+1)x(2r+1) square, zero padded; equal to ``r`` erosions by the 3x3 square.

    Separable: a 1-D erosion along each axis, each by log-doubling ANDs of shifted slices.

    Args:
        mask: bool (N, H, W).
        radius: r >= 0.

    Returns:
        bool (N, H, W).
    """
    return _erode_1d(_erode_1d(mask, radius, dim=2), radius, dim=1)


def _erode_1d(mask: Tensor, radius: int, dim: int) -> Tensor:
    """AND over the window ``[x - r, x + r]`` along ``dim``; outside the image is False."""
    if radius == 0:
        return mask
    pad = (radius, radius) if dim == 2 else (0, 0, radius, radius)
    acc = F.pad(mask, pad)
    window, span = 2 * radius + 1, 1
    # Invariant: acc[x] = AND of padded[x : x + span].
    while 2 * span <= window:
        size = acc.size(dim) - span
        acc = acc.narrow(dim, 0, size) & acc.narrow(dim, span, size)
        span *= 2
    rest = window - span
    if rest:
        size = acc.size(dim) - rest
        acc = acc.narrow(dim, 0, size) & acc.narrow(dim, rest, size)
    return acc


def surface_sq_distances(pred_boundary: Tensor, target_boundary: Tensor) -> tuple[Tensor, Tensor]:
    """Exact squared Euclidean distances between two boundaries, both directions at once.

    The boundaries are stacked as ``2N`` images: segment ``n < N`` is ``∂p_n`` and its partner is
    ``∂t_n``; segment ``N + n`` is ``∂t_n`` with partner ``∂p_n``. For every pixel ``(y, x)`` of a
    segment the result is ``min{(y - y')² + (x - x')² : (y', x') in the partner}``, ``inf`` when
    the partner is empty. So segment ``n`` holds ``d(p→t)²`` and segment ``N + n`` ``d(t→p)²``.

    Search: a window of radius ``w`` around a pixel holds every partner pixel closer than ``w + 1``,
    so a best window distance ``d² <= (w + 1)²`` is already the global minimum. Pixels not settled
    by the window of radius ``WINDOW_RADIUS`` go to an exhaustive exact search (``_exhaustive_search``).
    Squared distances are integers, exact in float32 below 2**24 (float64 above).

    Args:
        pred_boundary, target_boundary: bool (N, H, W).

    Returns:
        segment: int64 (P,), the segment of each boundary pixel, sorted (row-major pixel order).
        sq_distance: float (P,), squared distance of each boundary pixel to the partner boundary.
    """
    num_images, height, width = pred_boundary.shape
    boundaries = torch.cat([pred_boundary, target_boundary])
    segment, row, col = sparse_nonzero(boundaries)
    dtype = torch.float32 if height**2 + width**2 < 2**24 else torch.float64
    sq_distance = torch.full(segment.shape, float("inf"), dtype=dtype, device=segment.device)
    counts = torch.bincount(segment, minlength=2 * num_images)
    partner = torch.remainder(segment + num_images, 2 * num_images)
    pending = (counts[partner] > 0).nonzero().squeeze(1)
    if pending.numel() > 0:
        found = _window_search(boundaries, partner[pending], row[pending], col[pending], WINDOW_RADIUS, dtype)
        sq_distance[pending] = found
        pending = pending[found > (WINDOW_RADIUS + 1) ** 2]
    if pending.numel() > 0:
        # Pairwise |q|² + |c|² - 2 q·c stays below 4 (H² + W²): exact in float32 below 2**24.
        exact_dtype = torch.float32 if 4 * (height**2 + width**2) < 2**24 else torch.float64
        coords = torch.stack([row, col], dim=1).to(exact_dtype)
        sq_distance[pending] = _exhaustive_search(boundaries, coords, counts, segment[pending], coords[pending], dtype)
    return segment, sq_distance


def sparse_nonzero(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``mask.nonzero(as_tuple=True)`` for a sparse bool (K, H, W) mask, in the same order.

    Scans 8 pixels at a time as one int64 word, then looks inside the nonzero words only: a few
    times faster than ``nonzero`` on boundary masks, where most words are zero.
    """
    _, height, width = mask.shape
    flat = mask.reshape(-1)
    if flat.numel() % 8:
        flat = F.pad(flat, (0, 8 - flat.numel() % 8))
    words = flat.view(torch.int64).nonzero().squeeze(1)
    word, byte = flat.view(-1, 8)[words].nonzero(as_tuple=True)
    index = words[word] * 8 + byte
    image, rest = index.div(height * width, rounding_mode="floor"), index.remainder(height * width)
    return image, rest.div(width, rounding_mode="floor"), rest.remainder(width)


def _window_search(images: Tensor, image: Tensor, row: Tensor, col: Tensor, radius: int, dtype) -> Tensor:
    """Squared distance from each query ``(image, row, col)`` to the nearest True pixel of
    ``images[image]`` inside the (2r+1)x(2r+1) window centred on it, ``inf`` if none; (Q,).

    Row codes: bit ``j`` of ``code[k, y, x]`` says whether pixel ``(y, x + j - r)`` is set, so one
    small dense pass plus ``2r + 1`` gathered bytes per query cover the window, and a lookup table
    turns each code into its nearest ``dx²``. Needs ``2r + 1 <= 8`` (one byte per code).
    """
    side = 2 * radius + 1
    if side > 8:
        raise ValueError(f"window radius {radius} needs {side} bits per row code; at most 3 fits a byte")
    device = images.device
    width = images.shape[2]
    padded = F.pad(images, (radius, radius, radius, radius)).view(torch.uint8)
    codes = padded[:, :, :width].clone()
    for bit in range(1, side):
        codes |= padded[:, :, bit : bit + width] * (1 << bit)
    steps = torch.arange(side, device=device)
    sq_steps = ((steps - radius) ** 2).to(dtype)
    set_bits = ((torch.arange(2**side, device=device)[:, None] >> steps) & 1).bool()
    nearest_sq_dx = torch.where(set_bits, sq_steps, float("inf")).amin(dim=1)
    found = torch.empty(image.shape, dtype=dtype, device=device)
    chunk = max(1, CHUNK_ELEMENTS // side)
    for start in range(0, image.numel(), chunk):
        stop = start + chunk
        # Padded row y + step holds image row y + step - r.
        window = codes[image[start:stop, None], row[start:stop, None] + steps, col[start:stop, None]]
        found[start:stop] = (nearest_sq_dx[window.long()] + sq_steps).amin(dim=1)
    return found


def _exhaustive_search(
    boundaries: Tensor, coords: Tensor, counts: Tensor, segment: Tensor, query: Tensor, dtype
) -> Tensor:
    """Squared distance from each query to the nearest pixel of its segment's partner; (Q,).

    ``boundaries`` (2N, H, W) are the stacked boundaries and ``coords`` (P, 2) all their pixels,
    grouped by segment with ``counts`` each; ``query`` (Q, 2) are sorted by ``segment``. Per
    segment, the cheaper of two exact searches: all query-partner pairs as one matrix product
    (``q·t`` work), or the column transform of the partner (``H·W + q·W`` work, see
    ``_column_search``), which bounds the cost when both boundaries are large and far apart.
    """
    num_segments, height, width = boundaries.shape
    ends = torch.cumsum(counts, 0).tolist()
    query_ends = torch.cumsum(torch.bincount(segment, minlength=num_segments), 0).tolist()
    sq_norms = (coords * coords).sum(dim=1)
    query_sq_norms = (query * query).sum(dim=1)
    found = torch.empty(query.shape[0], dtype=dtype, device=query.device)
    query_start = 0
    for seg, query_end in enumerate(query_ends):
        num_queries = query_end - query_start
        if num_queries == 0:
            continue
        other = (seg + num_segments // 2) % num_segments
        start, end = ends[other - 1] if other > 0 else 0, ends[other]
        queries = slice(query_start, query_end)
        if num_queries * (end - start) > COLUMN_SEARCH_COST * height * width + num_queries * width:
            found[queries] = _column_search(boundaries[other], query[queries].long(), dtype)
        else:
            found[queries] = _pairwise_search(
                coords[start:end], sq_norms[start:end], query[queries], query_sq_norms[queries]
            ).to(dtype)
        query_start = query_end
    return found


def _pairwise_search(points: Tensor, sq_norms: Tensor, query: Tensor, query_sq_norms: Tensor) -> Tensor:
    """``min_c |q - c|²`` over all ``points`` for each query, as ``|q|² + |c|² - 2 q·c``; (Q,)."""
    found = torch.empty(query.shape[0], dtype=query.dtype, device=query.device)
    chunk = max(1, CHUNK_ELEMENTS // points.shape[0])
    for first in range(0, query.shape[0], chunk):
        last = first + chunk
        block = torch.addmm(sq_norms[None], query[first:last], points.T, alpha=-2)
        found[first:last] = block.amin(dim=1) + query_sq_norms[first:last]
    return found


def _column_search(partner: Tensor, query: Tensor, dtype) -> Tensor:
    """Exact squared distance from each query ``(row, col)`` to the nearest True pixel of
    ``partner`` (H, W), by the first pass of a separable distance transform:
    ``v(y, x')`` = squared distance from ``(y, x')`` to the nearest set pixel in column ``x'``,
    then ``d² = min_x' v(y, x') + (x - x')²``; (Q,)."""
    height, width = partner.shape
    rows = torch.arange(height, device=partner.device, dtype=dtype)[:, None]
    above = torch.where(partner, rows, float("-inf")).cummax(dim=0).values
    below = torch.where(partner, rows, float("inf")).flip(0).cummin(dim=0).values.flip(0)
    vertical = torch.minimum(rows - above, below - rows) ** 2
    cols = torch.arange(width, device=partner.device, dtype=dtype)
    found = torch.empty(query.shape[0], dtype=dtype, device=partner.device)
    chunk = max(1, CHUNK_ELEMENTS // width)
    for first in range(0, query.shape[0], chunk):
        last = first + chunk
        dx = query[first:last, 1:2].to(dtype) - cols
        found[first:last] = (vertical[query[first:last, 0]] + dx * dx).amin(dim=1)
    return found
