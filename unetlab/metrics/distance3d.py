"""Boundaries and exact nearest-boundary distances on batches of bool volumes (the box erosion of both is
``unetlab.metrics.distance.erode_box``).

The 3D counterparts of ``unetlab.metrics.distance``: plain torch on the input's device, exact Euclidean distances
between voxel centres with an anisotropic voxel size ``(sz, sy, sx)``, outside the volume is background. Volumes are
bool ``(N, D, H, W)``: depth (z, slices), height (y), width (x).
"""

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from unetlab.metrics.distance import crop_to_union, sparse_nonzero

# Rows (lines along the finest axis) a query reads in each stage of the window search, (2 r_a + 1)(2 r_b + 1) at
# most: a small window settles most queries cheaply, the larger ones the few left before the exhaustive search.
WINDOW_STAGES = (9, 21, 45, 81, 225, 961)
# Row steps at or above this mean "no boundary voxel in the row" (int16 steps; rows are shorter).
NO_ROW = 1 << 14
# Upper bound on the elements of one temporary (query x candidate) tensor: 16 MB in float64.
CHUNK_ELEMENTS = 1 << 21


def inner_boundary_3d(mask: Tensor) -> Tensor:
    """Boundary voxels ``∂m = m AND NOT erode(m)``, erosion by the 6-connected 3x3x3 cross.

    Args:
        mask: bool (N, D, H, W).

    Returns:
        bool (N, D, H, W): foreground voxels with a 6-neighbour in the background or outside the volume.
    """
    p = F.pad(mask, (1, 1, 1, 1, 1, 1))
    interior = (
        p[:, :-2, 1:-1, 1:-1] & p[:, 2:, 1:-1, 1:-1]
        & p[:, 1:-1, :-2, 1:-1] & p[:, 1:-1, 2:, 1:-1]
        & p[:, 1:-1, 1:-1, :-2] & p[:, 1:-1, 1:-1, 2:]
    )  # fmt: skip
    return mask & ~interior


def surface_sq_distances_3d(
    pred_boundary: Tensor, target_boundary: Tensor, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> tuple[Tensor, Tensor]:
    """Exact squared Euclidean distances between two boundary sets of volumes, both directions at once.

    As ``unetlab.metrics.distance.surface_sq_distances`` in 3D: segment ``n < N`` holds, for every voxel of ``∂p_n``,
    ``min{(z - z')² sz² + (y - y')² sy² + (x - x')² sx² : (z', y', x') in ∂t_n}`` (``inf`` when ``∂t_n`` is empty),
    segment ``N + n`` the same from ``∂t_n`` to ``∂p_n``, in the squared unit of ``spacing = (sz, sy, sx)``.

    Search, one pair at a time on the box of its two boundaries. The finest axis ``c`` is the *row* axis: one dense
    pass gives every voxel the steps to the nearest boundary voxel in its own row (exact, any length:
    ``_row_steps``). A query then reads those row distances in a window of ``2 r_a + 1`` rows along each other axis
    ``a`` around it, adds ``da² s_a²`` and takes the minimum. A boundary voxel outside the window is at least
    ``min_a (r_a + 1) s_a`` away, so a window minimum ``<= settled = min_a fl((r_a + 1)² s_a²)`` is the global one.
    The windows grow (``WINDOW_STAGES`` rows at most, their reaches covering about the same physical length along
    both axes) until every query is settled; the few left go to an exhaustive search over all voxels of the partner
    boundary.

    Exactness. Unit spacing: squared distances are integers, exact in float32 below 2**24 (else float64). Any other
    spacing: float64, and both searches evaluate an offset by the same expression
    ``fl(d_c² s_c²) + (fl(d_a² s_a²) + fl(d_b² s_b²))`` (``a, b`` the window's axes in order), so they agree bit for
    bit; rounding is monotone, so the settling rule holds for the rounded values too.

    Args:
        pred_boundary, target_boundary: bool (N, D, H, W).
        spacing: voxel size ``(sz, sy, sx)``, positive (checked by the caller).

    Returns:
        segment: int64 (P,), the segment of each boundary voxel, sorted.
        sq_distance: float (P,), squared distance of each boundary voxel to the partner boundary.
    """
    num_volumes = pred_boundary.shape[0]
    sq_spacing = tuple(float(s) ** 2 for s in spacing)
    unit = sq_spacing == (1.0, 1.0, 1.0)
    # The finest axis becomes the last (the row axis, ``c``); the other two keep their order (``a``, ``b``).
    row_axis = min(range(3), key=lambda axis: (sq_spacing[axis], -axis))
    window_axes = [axis for axis in range(3) if axis != row_axis]
    sq_steps = (sq_spacing[window_axes[0]], sq_spacing[window_axes[1]], sq_spacing[row_axis])
    order = (0, *(1 + axis for axis in window_axes), 1 + row_axis)
    extent = sum(size * size for size in pred_boundary.shape[1:])
    dtype = torch.float32 if unit and extent < 2**24 else torch.float64
    forward, backward = [], []  # (segment, sq_distance) of d(p→t) and of d(t→p), pair by pair
    # One pair at a time, each cropped to its own boundaries' box: the row pass costs what the box holds.
    for n in range(num_volumes):
        pair = torch.cat(crop_to_union(pred_boundary[n : n + 1], target_boundary[n : n + 1])).permute(order)
        pair = pair.contiguous()
        segment, sq_distance = _pair_sq_distances(pair, sq_steps, dtype)
        first = int((segment == 0).sum())  # the voxels are sorted by volume
        forward.append((torch.full_like(segment[:first], n), sq_distance[:first]))
        backward.append((torch.full_like(segment[first:], num_volumes + n), sq_distance[first:]))
    segments, distances = zip(*forward, *backward)
    return torch.cat(segments), torch.cat(distances)


def _pair_sq_distances(pair: Tensor, sq_steps: tuple[float, float, float], dtype) -> tuple[Tensor, Tensor]:
    """Segment (0: first to second, 1: second to first) and squared distance of every True voxel of a (2, A, B, C)
    pair to the other volume's nearest True voxel: windows of growing size (``WINDOW_STAGES``), then all."""
    coords = torch.stack(sparse_nonzero(pair), dim=1)  # (P, 4): volume, a, b, c
    segment = coords[:, 0]
    sq_distance = torch.full(segment.shape, float("inf"), dtype=dtype, device=segment.device)
    counts = torch.bincount(segment, minlength=2)
    if counts.min() == 0:  # a boundary is empty: every distance to it is inf
        return segment, sq_distance
    query = torch.cat([1 - segment[:, None], coords[:, 1:]], dim=1)
    pending = torch.arange(segment.numel(), device=segment.device)
    reaches = sorted({window_reach(sq_steps[0], sq_steps[1], rows) for rows in WINDOW_STAGES})
    pad = (max(r[0] for r in reaches), max(r[1] for r in reaches))
    steps = F.pad(_row_steps(pair), (0, 0, pad[1], pad[1], pad[0], pad[0]), value=NO_ROW)
    # fl(dc² s_c²) of every voxel's row step, inf in empty rows: one read per window row in the searches below
    table = torch.arange(pair.shape[-1] + 1, device=pair.device).to(dtype) ** 2 * sq_steps[2]
    table[-1] = math.inf
    rows = table[steps.clamp_(max=pair.shape[-1]).long()]
    for reach in reaches:
        found = _window_search(rows, query[pending], reach, pad, sq_steps, dtype)
        sq_distance[pending] = found
        settled = min((reach[0] + 1) ** 2 * sq_steps[0], (reach[1] + 1) ** 2 * sq_steps[1])
        pending = pending[found > settled]
        if pending.numel() == 0:
            return segment, sq_distance
    sq_distance[pending] = _exhaustive_search(coords, counts, segment[pending], coords[pending], sq_steps, dtype)
    return segment, sq_distance


@functools.lru_cache(maxsize=64)
def window_reach(sq_step_a: float, sq_step_b: float, budget: int) -> tuple[int, int]:
    """Reaches ``(r_a, r_b)`` of a window of at most ``budget`` rows: the largest physical half-width ``L`` with
    ``(2 r_a + 1)(2 r_b + 1) <= budget`` where ``r = ceil(L / s) - 1`` along each axis (at least 1)."""
    step_a, step_b = math.sqrt(sq_step_a), math.sqrt(sq_step_b)
    best = (1, 1)
    for length in sorted({(r + 1) * step for r in range(1, budget) for step in (step_a, step_b)}):
        reach = (max(1, math.ceil(length / step_a) - 1), max(1, math.ceil(length / step_b) - 1))
        if (2 * reach[0] + 1) * (2 * reach[1] + 1) > budget:
            break
        best = reach
    return best


def _row_steps(volumes: Tensor) -> Tensor:
    """Steps ``|dc|`` from every voxel to the nearest True voxel of its row (last axis), ``>= NO_ROW`` if the row
    has none: (K, A, B, C) bool -> int16, by a running maximum of the last True index before each voxel and one
    of the first after it (on the reversed rows)."""
    length = volumes.shape[-1]
    if length >= NO_ROW:
        raise ValueError(f"volumes of {length} voxels along their finest axis: at most {NO_ROW - 1} are supported")
    index = torch.arange(length, device=volumes.device, dtype=torch.int16)
    far = torch.tensor(-NO_ROW, dtype=torch.int16, device=volumes.device)
    before = torch.where(volumes, index, far).cummax(dim=-1).values
    after = torch.where(volumes.flip(-1), index, far).cummax(dim=-1).values.flip(-1)  # length - 1 - first after
    return torch.minimum(index - before, (length - 1 - index) - after)


def _window_search(
    rows: Tensor,
    query: Tensor,
    reach: tuple[int, int],
    pad: tuple[int, int],
    sq_steps: tuple[float, float, float],
    dtype,
) -> Tensor:
    """Squared distance from each query ``(volume, a, b, c)`` to the nearest True voxel among the rows
    ``|da| <= reach[0], |db| <= reach[1]`` around it (any ``dc``), ``inf`` if none; (Q,). ``rows`` (K, A', B', C)
    hold ``fl(dc² s_c²)`` of the row steps (``_row_steps``; ``inf`` in an empty row), padded by ``pad`` empty rows on
    both sides of a and b."""
    ra, rb = reach
    device = rows.device
    _, size_a, size_b, length = rows.shape
    step_a = torch.arange(-ra, ra + 1, device=device)
    step_b = torch.arange(-rb, rb + 1, device=device)
    sq_ab = ((step_a**2).to(dtype) * sq_steps[0])[:, None] + ((step_b**2).to(dtype) * sq_steps[1])
    offsets = ((step_a[:, None] * size_b + step_b) * length).reshape(-1)
    sq_ab = sq_ab.reshape(-1)
    flat = rows.reshape(-1)
    base = ((query[:, 0] * size_a + query[:, 1] + pad[0]) * size_b + query[:, 2] + pad[1]) * length + query[:, 3]
    found = torch.empty(query.shape[0], dtype=dtype, device=device)
    chunk = max(1, CHUNK_ELEMENTS // offsets.numel())
    for start in range(0, query.shape[0], chunk):
        index = (base[start : start + chunk, None] + offsets).view(-1)
        values = flat.gather(0, index).view(-1, offsets.numel())  # gather: several times faster than indexing here
        found[start : start + chunk] = (values + sq_ab).amin(dim=1)
    return found


def _exhaustive_search(
    coords: Tensor, counts: Tensor, segment: Tensor, query: Tensor, sq_steps: tuple[float, float, float], dtype
) -> Tensor:
    """Squared distance from each query to the nearest voxel of its segment's partner, over all of them; (Q,).

    ``coords`` (P, 4) are all boundary voxels ``(segment, a, b, c)``, grouped by segment with ``counts`` each;
    ``query`` (Q, 4) are sorted by ``segment``. Offsets evaluate as ``dc² s_c² + (da² s_a² + db² s_b²)``, the
    window search's expression.
    """
    num_segments = counts.numel()
    ends = torch.cumsum(counts, 0).tolist()
    query_ends = torch.cumsum(torch.bincount(segment, minlength=num_segments), 0).tolist()
    points = coords[:, 1:].to(dtype)
    queries = query[:, 1:].to(dtype)
    found = torch.empty(query.shape[0], dtype=dtype, device=query.device)
    query_start = 0
    for seg, query_end in enumerate(query_ends):
        if query_end == query_start:
            continue
        other = (seg + num_segments // 2) % num_segments
        start, end = ends[other - 1] if other > 0 else 0, ends[other]
        partner = points[start:end]
        chunk = max(1, CHUNK_ELEMENTS // max(1, end - start))
        for first in range(query_start, query_end, chunk):
            last = min(first + chunk, query_end)
            q = queries[first:last]
            da = q[:, 0:1] - partner[:, 0]
            db = q[:, 1:2] - partner[:, 1]
            dc = q[:, 2:3] - partner[:, 2]
            sq_ab = da * da * sq_steps[0] + db * db * sq_steps[1]
            found[first:last] = (dc * dc * sq_steps[2] + sq_ab).amin(dim=1)
        query_start = query_end
    return found
