"""Boundaries, square erosion and exact nearest-boundary distances on batches of bool masks.

Everything here is plain torch on the input's device (CPU or CUDA): no NumPy round trip, no
chamfer approximation. Outside the image counts as background throughout.
"""

import math

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

    Args:
        mask: bool (N, H, W).
        radius: r >= 0.

    Returns:
        bool (N, H, W).
    """
    return erode_rectangle(mask, radius, radius)


def erode_rectangle(mask: Tensor, radius_y: int, radius_x: int) -> Tensor:
    """Erosion by the (2ry+1)x(2rx+1) rectangle, zero padded.

    Args:
        mask: bool (N, H, W).
        radius_y, radius_x: ry, rx >= 0, the half-heights along rows (y) and columns (x).

    Returns:
        bool (N, H, W).
    """
    return erode_box(mask, (radius_y, radius_x))


def erode_box(mask: Tensor, radii: tuple[int, ...]) -> Tensor:
    """Erosion by the box ``(2r_1+1) x ... x (2r_k+1)`` over the last ``k = len(radii)`` axes, zero padded: a
    rectangle for images (``(ry, rx)``), a box for volumes (``(rz, ry, rx)``).

    Separable: a 1-D erosion along each axis, each by log-doubling ANDs of shifted slices.

    Args:
        mask: bool (N, *spatial), ``len(spatial) == len(radii)``.
        radii: half-widths ``>= 0`` per spatial axis, in the axes' order.

    Returns:
        bool, the shape of ``mask``.
    """
    first = mask.ndim - len(radii)
    is_bool = mask.dtype == torch.bool
    mask = mask.view(torch.uint8) if is_bool else mask  # uint8 ANDs: ~15% faster than bool ones on CPU
    for offset, radius in enumerate(radii):
        mask = _erode_along(mask, radius, first + offset)
    return mask.view(torch.bool) if is_bool else mask


def _erode_along(mask: Tensor, radius: int, dim: int) -> Tensor:
    """AND over the window ``[x - r, x + r]`` along ``dim``; outside the image is False."""
    if radius == 0:
        return mask
    pad = [0, 0] * (mask.ndim - 1 - dim) + [radius, radius]
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


def surface_sq_distances(
    pred_boundary: Tensor, target_boundary: Tensor, spacing: tuple[float, float] = (1.0, 1.0)
) -> tuple[Tensor, Tensor]:
    """Exact squared Euclidean distances between two boundaries, both directions at once.

    The boundaries are stacked as ``2N`` images: segment ``n < N`` is ``∂p_n`` and its partner is
    ``∂t_n``; segment ``N + n`` is ``∂t_n`` with partner ``∂p_n``. For every pixel ``(y, x)`` of a
    segment the result is ``min{(y - y')² sy² + (x - x')² sx² : (y', x') in the partner}``, ``inf``
    when the partner is empty, with ``(sy, sx) = spacing`` the pixel size. So segment ``n`` holds
    ``d(p→t)²`` and segment ``N + n`` ``d(t→p)²``, in the squared unit of ``spacing``.

    Search: a window of radius ``w`` around a pixel holds every partner pixel closer than
    ``(w + 1) · min(sy, sx)``: a pixel outside it has ``|dy| >= w + 1`` or ``|dx| >= w + 1``, so its
    distance is at least ``(w + 1) sy`` or ``(w + 1) sx``, both ``>= (w + 1) min(sy, sx)``. A best
    window distance ``d² <= ((w + 1) min(sy, sx))²`` is therefore already the global minimum (with
    unit pixels: ``d² <= (w + 1)²``). With anisotropic pixels the window reaches further along the
    finer axis, which settles more (``_spaced_window_search``). Pixels not settled by the window of
    radius ``WINDOW_RADIUS`` go to an exhaustive exact search (``_exhaustive_search``).

    Exactness. Unit spacing (the fast path): squared distances are integers, exact in float32 below
    2**24 (float64 above). Any other spacing: float64, and every search path evaluates an offset
    ``(dy, dx)`` by the same expression ``fl(dy² · sy²) + fl(dx² · sx²)`` (``dy², dx²`` exact integers,
    ``sy², sx²`` rounded once), so the paths agree bit for bit. Rounding is monotone, hence a pixel
    outside the window evaluates to at least ``fl((w + 1)² · min(sy², sx²))``, the threshold the window
    result is compared with (or the one of the longer window, ``_spaced_window_search``): the settling
    rule holds for the rounded values too.

    Args:
        pred_boundary, target_boundary: bool (N, H, W).
        spacing: pixel size ``(sy, sx)``, positive (checked by the caller).

    Returns:
        segment: int64 (P,), the segment of each boundary pixel, sorted (row-major pixel order).
        sq_distance: float (P,), squared distance of each boundary pixel to the partner boundary.
    """
    num_images, height, width = pred_boundary.shape
    sq_spacing = (float(spacing[0]) ** 2, float(spacing[1]) ** 2)
    unit = sq_spacing == (1.0, 1.0)
    boundaries = torch.cat([pred_boundary, target_boundary])
    segment, row, col = sparse_nonzero(boundaries)
    if unit:
        dtype = torch.float32 if height**2 + width**2 < 2**24 else torch.float64
    else:
        dtype = torch.float64
    sq_distance = torch.full(segment.shape, float("inf"), dtype=dtype, device=segment.device)
    counts = torch.bincount(segment, minlength=2 * num_images)
    partner = torch.remainder(segment + num_images, 2 * num_images)
    pending = (counts[partner] > 0).nonzero().squeeze(1)
    if pending.numel() > 0:
        queries = (boundaries, partner[pending], row[pending], col[pending], WINDOW_RADIUS)
        if unit:
            found, settled = _window_search(*queries, dtype), (WINDOW_RADIUS + 1) ** 2
        else:
            found, settled = _spaced_window_search(*queries, sq_spacing)
        sq_distance[pending] = found
        pending = pending[found > settled]
    if pending.numel() > 0:
        if unit:
            # Pairwise |q|² + |c|² - 2 q·c stays below 4 (H² + W²): exact in float32 below 2**24.
            exact_dtype = torch.float32 if 4 * (height**2 + width**2) < 2**24 else torch.float64
        else:
            exact_dtype = torch.float64  # integer coordinates, exact; differences taken per pair
        coords = torch.stack([row, col], dim=1).to(exact_dtype)
        sq_distance[pending] = _exhaustive_search(
            boundaries, coords, counts, segment[pending], coords[pending], dtype, None if unit else sq_spacing
        )
    return segment, sq_distance


def sparse_flat_index(mask: Tensor) -> Tensor:
    """The flat (row-major) indices of the True elements of a sparse bool mask, ascending; int64 (P,).

    Scans 8 elements at a time as one int64 word, then looks inside the nonzero words only: a few
    times faster than ``nonzero`` on boundary masks, where most words are zero.
    """
    flat = mask.reshape(-1)
    if flat.numel() % 8:
        flat = F.pad(flat, (0, 8 - flat.numel() % 8))
    words = flat.view(torch.int64).nonzero().squeeze(1)
    word, byte = flat.view(-1, 8)[words].nonzero(as_tuple=True)
    return words[word] * 8 + byte


def sparse_nonzero(mask: Tensor) -> tuple[Tensor, ...]:
    """``mask.nonzero(as_tuple=True)`` for a sparse bool (K, H, W) mask (or (K, D, H, W) volumes), in the same
    order, from ``sparse_flat_index``."""
    index = sparse_flat_index(mask)
    coords = []
    for size in reversed(mask.shape[1:]):  # the last axis first
        coords.append(index.remainder(size))
        index = index.div(size, rounding_mode="floor")
    return index, *reversed(coords)


def crop_to_union(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Both masks (N, *spatial) cropped to the bounding box of the True pixels of either, over the whole batch (one
    pixel along each axis when there are none), contiguous.

    Exact for every boundary metric: outside the image is background anyway, so erosions and boundaries do not
    change, and both boundaries (the only distance endpoints) lie inside the box.
    """
    # uint8 reductions are much faster than bool ones on CPU, and reductions of the outer axes of a contiguous tensor
    # faster than of inner ones: each axis's profile comes from reducing what follows it, then the axis itself.
    union = (pred | target).view(torch.uint8).amax(dim=0)
    box, rest = [], union
    for _ in range(union.ndim):
        profile = rest.reshape(rest.shape[0], -1).amax(dim=1) if rest.ndim > 1 else rest
        present = profile.nonzero()
        if present.numel() == 0:
            box = [slice(0, 1)] * union.ndim
            break
        box.append(slice(int(present[0]), int(present[-1]) + 1))
        rest = rest.amax(dim=0) if rest.ndim > 1 else rest
    # Contiguous copies: reductions over strided views are several times slower.
    index = (slice(None), *box)
    return pred[index].contiguous(), target[index].contiguous()


def _spaced_window_search(
    images: Tensor, image: Tensor, row: Tensor, col: Tensor, radius: int, sq_spacing: tuple[float, float]
) -> tuple[Tensor, float]:
    """``_window_search`` for anisotropic pixels, float64: ``(found, settled)``, where a query with
    ``found <= settled`` holds its global minimum.

    The codes bound the window to ``2r + 1`` pixels along the coded axis, but any number of codes
    can be gathered along the other. So the codes run along the coarser axis and the window reaches
    ``reach`` pixels along the finer one, about as far in physical terms as ``r`` pixels along the
    coarser one (at most ``2 (r + 1) - 1``: wider windows cost more than they settle).

    Settling: a pixel outside the window has ``|d_fine| >= reach + 1`` or ``|d_coarse| >= r + 1``, so
    it is at least ``min((reach + 1) s_fine, (r + 1) s_coarse) >= (r + 1) min(sy, sx)`` away; and as
    rounding is monotone (``fl(dy² sy²)`` grows with ``|dy|``, adding ``fl(dx² sx²) >= 0`` cannot
    lower it), its rounded ``d²`` is at least
    ``settled = min(fl((reach + 1)² s_fine²), fl((r + 1)² s_coarse²))``.
    """
    sq_fine, sq_coarse = sorted(sq_spacing)
    ratio = math.sqrt(sq_coarse / sq_fine)
    reach = max(radius, min(2 * (radius + 1) - 1, math.ceil((radius + 1) * ratio) - 1))
    settled = min((reach + 1) ** 2 * sq_fine, (radius + 1) ** 2 * sq_coarse)
    coded_dim = 2 if sq_spacing[1] >= sq_spacing[0] else 1
    found = _window_search(images, image, row, col, radius, torch.float64, sq_spacing, reach, coded_dim)
    return found, settled


def _window_search(
    images: Tensor,
    image: Tensor,
    row: Tensor,
    col: Tensor,
    radius: int,
    dtype,
    sq_spacing: tuple[float, float] = (1.0, 1.0),
    reach: int | None = None,
    coded_dim: int = 2,
) -> Tensor:
    """Squared distance ``dy² sy² + dx² sx²`` from each query ``(image, row, col)`` to the nearest
    True pixel of ``images[image]`` inside the window centred on it, ``inf`` if none; (Q,). The
    window spans ``2r + 1`` pixels along ``coded_dim`` (2: x, 1: y) and ``2 reach + 1`` along the
    other axis (``reach = r`` by default). ``sq_spacing`` is ``(sy², sx²)``.

    Codes (``coded_dim = 2``): bit ``j`` of ``code[k, y, x]`` says whether pixel ``(y, x + j - r)``
    is set, so one small dense pass plus ``2 reach + 1`` gathered bytes per query cover the window,
    and a lookup table turns each code into its nearest ``dx² sx²`` (within one row the nearest in
    ``|dx|`` is the nearest, whatever the spacing). ``coded_dim = 1`` is the same with the axes'
    roles swapped. Needs ``2r + 1 <= 8`` (one byte per code).
    """
    side = 2 * radius + 1
    if side > 8:
        raise ValueError(f"window radius {radius} needs {side} bits per row code; at most 3 fits a byte")
    reach = radius if reach is None else reach
    device = images.device
    sq_coded, sq_gathered = (sq_spacing[1], sq_spacing[0]) if coded_dim == 2 else sq_spacing
    pad = (radius, radius, reach, reach) if coded_dim == 2 else (reach, reach, radius, radius)
    padded = F.pad(images, pad).view(torch.uint8)
    length = images.shape[coded_dim]
    codes = padded.narrow(coded_dim, 0, length).clone()
    for bit in range(1, side):
        codes |= padded.narrow(coded_dim, bit, length) * (1 << bit)
    bits = torch.arange(side, device=device)
    sq_coded_steps = ((bits - radius) ** 2).to(dtype) * sq_coded  # exact for unit spacing
    set_bits = ((torch.arange(2**side, device=device)[:, None] >> bits) & 1).bool()
    nearest_sq_coded = torch.where(set_bits, sq_coded_steps, float("inf")).amin(dim=1)
    steps = torch.arange(2 * reach + 1, device=device)
    sq_gathered_steps = ((steps - reach) ** 2).to(dtype) * sq_gathered
    found = torch.empty(image.shape, dtype=dtype, device=device)
    chunk = max(1, CHUNK_ELEMENTS // steps.numel())
    for start in range(0, image.numel(), chunk):
        stop = start + chunk
        # Padded row (or column) y + step holds image row (column) y + step - reach.
        if coded_dim == 2:
            window = codes[image[start:stop, None], row[start:stop, None] + steps, col[start:stop, None]]
        else:
            window = codes[image[start:stop, None], row[start:stop, None], col[start:stop, None] + steps]
        found[start:stop] = (nearest_sq_coded[window.long()] + sq_gathered_steps).amin(dim=1)
    return found


def _exhaustive_search(
    boundaries: Tensor,
    coords: Tensor,
    counts: Tensor,
    segment: Tensor,
    query: Tensor,
    dtype,
    sq_spacing: tuple[float, float] | None = None,
) -> Tensor:
    """Squared distance from each query to the nearest pixel of its segment's partner; (Q,).

    ``boundaries`` (2N, H, W) are the stacked boundaries and ``coords`` (P, 2) all their pixels,
    grouped by segment with ``counts`` each; ``query`` (Q, 2) are sorted by ``segment``. Per
    segment, the cheaper of two exact searches: all query-partner pairs (``q·t`` work; one matrix
    product for unit pixels, per-axis differences for a ``sq_spacing = (sy², sx²)``), or the column
    transform of the partner (``H·W + q·W`` work, see ``_column_search``), which bounds the cost
    when both boundaries are large and far apart. ``sq_spacing=None``: unit pixels.
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
            found[queries] = _column_search(boundaries[other], query[queries].long(), dtype, sq_spacing or (1.0, 1.0))
        elif sq_spacing is not None:
            found[queries] = _pairwise_search_spaced(coords[start:end], query[queries], sq_spacing)
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


def _pairwise_search_spaced(points: Tensor, query: Tensor, sq_spacing: tuple[float, float]) -> Tensor:
    """``min_c fl(dy² sy²) + fl(dx² sx²)`` over all ``points`` for each query, ``(dy, dx) = q - c``;
    float64 (Q,). No ``|q|² + |c|² - 2 q·c`` here: with non-integer terms its cancellation would
    round differently from the window search."""
    found = torch.empty(query.shape[0], dtype=torch.float64, device=query.device)
    chunk = max(1, CHUNK_ELEMENTS // points.shape[0])
    for first in range(0, query.shape[0], chunk):
        last = first + chunk
        dy = query[first:last, 0:1] - points[:, 0]
        dx = query[first:last, 1:2] - points[:, 1]
        found[first:last] = (dy * dy * sq_spacing[0] + dx * dx * sq_spacing[1]).amin(dim=1)
    return found


def _column_search(partner: Tensor, query: Tensor, dtype, sq_spacing: tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """Exact squared distance from each query ``(row, col)`` to the nearest True pixel of
    ``partner`` (H, W), by the first pass of a separable distance transform:
    ``v(y, x')`` = squared distance ``dy² sy²`` from ``(y, x')`` to the nearest set pixel in column
    ``x'`` (the nearest in rows is the nearest, whatever the spacing), then
    ``d² = min_x' v(y, x') + (x - x')² sx²``; (Q,). ``sq_spacing`` is ``(sy², sx²)``."""
    height, width = partner.shape
    rows = torch.arange(height, device=partner.device, dtype=dtype)[:, None]
    above = torch.where(partner, rows, float("-inf")).cummax(dim=0).values
    below = torch.where(partner, rows, float("inf")).flip(0).cummin(dim=0).values.flip(0)
    vertical = torch.minimum(rows - above, below - rows) ** 2 * sq_spacing[0]
    cols = torch.arange(width, device=partner.device, dtype=dtype)
    found = torch.empty(query.shape[0], dtype=dtype, device=partner.device)
    chunk = max(1, CHUNK_ELEMENTS // width)
    for first in range(0, query.shape[0], chunk):
        last = first + chunk
        dx = query[first:last, 1:2].to(dtype) - cols
        found[first:last] = (vertical[query[first:last, 0]] + dx * dx * sq_spacing[1]).amin(dim=1)
    return found
