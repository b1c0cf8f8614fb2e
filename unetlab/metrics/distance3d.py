"""Boundaries and exact nearest-boundary distances on batches of bool volumes (the box erosion of both is
``unetlab.metrics.distance.erode_box``).

The 3D counterparts of ``unetlab.metrics.distance``: plain torch on the input's device, exact Euclidean distances
between voxel centres with an anisotropic voxel size ``(sz, sy, sx)``, outside the volume is background. Volumes are
bool ``(N, D, H, W)``: depth (z, slices), height (y), width (x).
"""

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from unetlab.metrics.distance import crop_to_union, sparse_flat_index

# Reach of the dense pass (voxels along the coarsest axis) in the successive stages of the search; later stages grow
# by the last ratio until the box is spanned (`_stages`). Most boundary voxels settle in the first two (within
# 1 and 2 voxels along that axis: 2.5 and 5 mm at 2.5 mm slices); each stage re-reads its windows.
DENSE_REACHES = (0, 1, 3, 8, 21, 55)
# Row steps at or above this mean "no boundary voxel in the line" (int16 steps, for rows of 128 voxels or more,
# which must be shorter than this; shorter rows take uint8 steps with 128 as "none").
NO_ROW = 1 << 14
# Upper bound on the elements of one temporary (query x window) tensor: 16 MB in float64.
CHUNK_ELEMENTS = 1 << 21
# The stage buffer is padded for the windows of this many stages ahead (a wider window reallocates it).
PAD_STAGES = 4


def inner_boundary_3d(mask: Tensor) -> Tensor:
    """Boundary voxels ``∂m = m AND NOT erode(m)``, erosion by the 6-connected 3x3x3 cross.

    One pass over the flattened volumes: a voxel is interior when its six neighbours at flat offsets ``±1``,
    ``±W``, ``±H·W`` are set; the offsets that wrap around a row, a slice or a volume only reach voxels on a face,
    which are never interior (outside the volume is background) and are cleared afterwards.

    Args:
        mask: bool (N, D, H, W).

    Returns:
        bool (N, D, H, W): foreground voxels with a 6-neighbour in the background or outside the volume.
    """
    _, _, height, width = mask.shape
    flat = mask.reshape(-1).view(torch.uint8)  # uint8 bitwise ops are several times faster than bool ones here
    interior = torch.zeros_like(flat)
    plane = height * width
    length = flat.numel() - 2 * plane
    if length > 0:
        core = interior[plane : plane + length]
        torch.bitwise_and(flat[:length], flat[2 * plane :], out=core)
        for offset in (-width, width, -1, 1):
            core &= flat[plane + offset : plane + offset + length]
        interior = interior.view(mask.shape)
        for axis in (1, 2, 3):
            interior.select(axis, 0).zero_()
            interior.select(axis, mask.shape[axis] - 1).zero_()
    return flat.view(mask.shape) > interior.view(mask.shape)


def search_axes(sq_spacing: tuple[float, float, float]) -> tuple[int, int, int]:
    """The roles of the axes ``(dense, row, window)`` for squared voxel sizes ``sq_spacing``: the coarsest axis is
    the dense one, the finest of the two others the row axis (first on ties: the window axis is the later one)."""
    dense = max(range(3), key=lambda axis: (sq_spacing[axis], -axis))
    row, window = sorted((axis for axis in range(3) if axis != dense), key=lambda axis: (sq_spacing[axis], axis))
    return dense, row, window


def surface_sq_distances_3d(
    pred_boundary: Tensor, target_boundary: Tensor, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> tuple[Tensor, Tensor]:
    """Exact squared Euclidean distances between two boundary sets of volumes, both directions at once.

    As ``unetlab.metrics.distance.surface_sq_distances`` in 3D: segment ``n < N`` holds, for every voxel of ``∂p_n``,
    the minimum over the voxels of ``∂t_n`` of the squared distance (``inf`` when ``∂t_n`` is empty), segment
    ``N + n`` the same from ``∂t_n`` to ``∂p_n``, in the squared unit of ``spacing = (sz, sy, sx)``.

    A separable distance transform restricted to the queries, one pair at a time on the box of its two boundaries.
    The axes take three roles (``search_axes``): ``r`` the finest, ``a`` the coarsest, ``w`` the third.

    1. Row pass, exact for any length: every voxel gets ``R(a, r, w) = fl(dr² s_r²)``, ``dr`` the steps to the
       nearest boundary voxel along its ``r`` line (``_row_steps``; ``inf`` if there is none).
    2. Dense pass along ``a``, reach ``ρ``: ``G(a, r, w) = min_{|da| <= ρ} fl(R(a + da, r, w) + fl(da² s_a²))``,
       computed on the box of the unsettled queries' ``(a, r)`` lines only, and grown stage by stage.
    3. Window along ``w``, reach ``ρ_w``: a query ``(a, r, w)`` takes ``min_{|dw| <= ρ_w} fl(G(a, r, w + dw) +
       fl(dw² s_w²))``, the minimum over every partner voxel with ``|da| <= ρ`` and ``|dw| <= ρ_w``.

    Stages (``DENSE_REACHES``) grow ``ρ`` and ``ρ_w`` together (about the same physical length along both axes).
    A partner voxel outside a query's window has ``|da| >= ρ + 1`` or ``|dw| >= ρ_w + 1``, so its value is at least
    ``settled = min(fl((ρ + 1)² s_a²), fl((ρ_w + 1)² s_w²))`` (all terms are ``>= 0`` and rounding is monotone): a
    query whose window minimum is at most ``settled`` holds its global minimum; the others go on to the next stage.
    A reach that spans the box along its axis drops out of ``settled``, so the last stage, spanning both, settles
    every query: no exhaustive search is needed.

    Exactness. Every squared distance is the minimum over all partner voxels of one expression,
    ``fl(fl(fl(dr² s_r²) + fl(da² s_a²)) + fl(dw² s_w²))`` in float64 (monotone rounding lets the minima of steps 2
    and 3 be taken before the additions), whatever the stage that settles it: the tests compare every stage with a
    brute force evaluating that expression, bit for bit. Unit spacing: squared distances are integers, exact in
    float32 below 2**24 (else float64).

    Cost: the row pass is a few elementwise operations per voxel of the box, the dense pass two per voxel and unit
    of reach on the box of the unsettled queries' lines; a query reads ``2 ρ_w + 1`` values per stage, linear in
    the distance it needs (a window of whole rows around it would read its square). Memory: per pair, the row
    distances and one stage buffer of the box, padded along ``w`` for the windows of the next ``PAD_STAGES`` stages
    (at most three times the box), and query windows in chunks of ``CHUNK_ELEMENTS``.

    Args:
        pred_boundary, target_boundary: bool (N, D, H, W).
        spacing: voxel size ``(sz, sy, sx)``, positive (checked by the caller).

    Returns:
        segment: int64 (P,), the segment of each boundary voxel, sorted.
        sq_distance: float (P,), squared distance of each boundary voxel to the partner boundary.
    """
    num_volumes = pred_boundary.shape[0]
    device = pred_boundary.device
    sq_spacing = tuple(float(s) ** 2 for s in spacing)
    unit = sq_spacing == (1.0, 1.0, 1.0)
    extent = sum(size * size for size in pred_boundary.shape[1:])
    dtype = torch.float32 if unit and extent < 2**24 else torch.float64
    axes = search_axes(sq_spacing)
    sq_steps = tuple(sq_spacing[axis] for axis in axes)
    layout = (0, *(1 + axis for axis in axes))  # (volume, a, r, w)
    forward, backward = [], []  # (segment, sq_distance) of d(p→t) and of d(t→p), pair by pair
    for n in range(num_volumes):
        # One pair at a time, cropped to its own boundaries' box: the dense passes cost what the box holds.
        pair = torch.cat(crop_to_union(pred_boundary[n : n + 1], target_boundary[n : n + 1])).permute(layout)
        pair = pair.contiguous()
        line, offset, num_forward = _voxels(pair)
        if 0 < num_forward < line.numel():
            sq_distance = _pair_sq_distances(pair, line, offset, num_forward, sq_steps, dtype)
        else:  # a boundary is empty: every distance to it is inf
            sq_distance = torch.full(line.shape, math.inf, dtype=dtype, device=device)
        forward.append((torch.full((num_forward,), n, device=device), sq_distance[:num_forward]))
        backward.append((torch.full((line.numel() - num_forward,), num_volumes + n, device=device),
                         sq_distance[num_forward:]))  # fmt: skip
    if not forward:  # no volumes
        return torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, dtype=dtype, device=device)
    segments, distances = zip(*forward, *backward)
    return torch.cat(segments), torch.cat(distances)


def _voxels(pair: Tensor) -> tuple[Tensor, Tensor, int]:
    """The True voxels of a (2, A, R, W) pair in memory order: the ``w`` line of each, as ``(volume · A + a) · R +
    r``, its offset ``w`` along the line (int64 (P,) each), and how many lie in the first volume.

    The flat indices come from ``unetlab.metrics.distance.sparse_flat_index``; the division by ``W`` runs in float64,
    exact far beyond any volume.
    """
    num_lines, width = pair.numel() // pair.shape[-1], pair.shape[-1]
    index = sparse_flat_index(pair).double()
    line = torch.div(index, width).floor_()
    offset = (index - line * width).long()
    line = line.long()
    num_forward = int(torch.searchsorted(line, num_lines // 2))
    return line, offset, num_forward


def _stages(sq_steps: tuple[float, float, float], size_a: int, size_w: int) -> list[tuple[int, int, float]]:
    """The stages ``(ρ, ρ_w, settled)`` of the search in a box of ``size_a`` voxels along ``a`` and ``size_w`` along
    ``w``: ``ρ`` from ``DENSE_REACHES`` (then growing by its last ratio), ``ρ_w`` reaching as far physically
    (``(ρ_w + 1) s_w >= (ρ + 1) s_a``), both capped at the box, until both span it (``settled = inf``)."""
    step_a, step_w = math.sqrt(sq_steps[0]), math.sqrt(sq_steps[2])
    ratio = DENSE_REACHES[-1] / DENSE_REACHES[-2]
    stages, nominal = [], 0
    for k in itertools.count():
        nominal = DENSE_REACHES[k] if k < len(DENSE_REACHES) else math.ceil((nominal + 1) * ratio) - 1
        reach = min(size_a - 1, nominal)
        reach_w = min(size_w - 1, max(0, math.ceil((nominal + 1) * step_a / step_w) - 1))
        settled = min(
            (reach + 1) ** 2 * sq_steps[0] if reach < size_a - 1 else math.inf,  # fl((ρ + 1)² s_a²)
            (reach_w + 1) ** 2 * sq_steps[2] if reach_w < size_w - 1 else math.inf,
        )
        if not stages or stages[-1][:2] != (reach, reach_w):
            stages.append((reach, reach_w, settled))
        if settled == math.inf:
            return stages
    raise AssertionError("unreachable")


def _pair_sq_distances(
    pair: Tensor, line: Tensor, offset: Tensor, num_forward: int, sq_steps: tuple[float, float, float], dtype
) -> Tensor:
    """Squared distance of every True voxel of a (2, A, R, W) pair (``line``, ``offset`` from ``_voxels``; the
    first ``num_forward`` in volume 0) to the other volume's nearest True voxel, by the stages of
    ``surface_sq_distances_3d``; (P,)."""
    device = pair.device
    size_a, size_r, size_w = pair.shape[1:]
    stages = _stages(sq_steps, size_a, size_w)
    pad = stages[0][1]
    steps = F.pad(_row_steps(pair), (pad, pad), value=size_r)  # (2, A, R, W + 2 pad), >= size_r: no voxel
    table = torch.arange(size_r + 1, device=device).to(dtype) ** 2 * sq_steps[1]
    table[-1] = math.inf  # fl(dr² s_r²) of every step, inf in empty rows
    rows = table.index_select(0, steps.clamp_(max=size_r).view(-1).int()).view(steps.shape)
    source = rows[..., pad : pad + size_w]  # R(a, r, w), what the dense pass reads
    max_reach_w = max(reach_w for _, reach_w, _ in stages)
    sq_w = torch.arange(-max_reach_w, max_reach_w + 1, device=device).pow(2).to(dtype) * sq_steps[2]
    num_lines = size_a * size_r
    partner_line = line + torch.where(line < num_lines, num_lines, -num_lines)  # the line each query reads
    slab, row = partner_line.div(size_r, rounding_mode="floor"), partner_line.remainder(size_r)
    # The stage buffer `grid` (2, A, R, W + 2 grid_pad): R itself in the first stage (reach 0 along a), then G,
    # the dense pass of reach `reached`, in the boxes of the unsettled queries' lines; `start`: each query's
    # window centre in it.
    grid, grid_pad, filled, reached = rows, pad, pad, 0
    start = partner_line * grid.shape[-1] + offset + grid_pad
    found = torch.empty(line.shape, dtype=dtype, device=device)
    pending = None  # all queries
    for reach, reach_w, settled in stages:
        grow = reach_w > grid_pad or (reach > 0 and grid is rows)
        if grow or reach > reached:
            boxes = _query_boxes(slab, row, pending, num_forward, size_a)
        if grow:  # a new buffer, padded for the windows of the next few stages; G computed afresh in it
            grid_pad = [w for r, w, _ in stages if r >= reach and w >= reach_w][:PAD_STAGES][-1]
            grid = torch.empty(*rows.shape[:-1], size_w + 2 * grid_pad, dtype=dtype, device=device)
            start = partner_line * grid.shape[-1] + offset + grid_pad
            filled, reached = 0, -1
        if reach_w > filled:  # inf beyond the ends of the lines, as far as the windows reach
            grid[..., grid_pad - reach_w : grid_pad - filled] = math.inf
            grid[..., grid_pad + size_w + filled : grid_pad + size_w + reach_w] = math.inf
            filled = reach_w
        if reach > reached:
            for volume, a0, a1, r0, r1 in boxes:
                box = grid[volume, a0 : a1 + 1, r0 : r1 + 1, grid_pad : grid_pad + size_w]
                _dense_pass(box, source[volume, :, r0 : r1 + 1], a0, reached, reach, sq_steps[0])
            reached = reach
        first = (start if pending is None else start[pending]) - reach_w
        result = _window_search(grid, first, sq_w[max_reach_w - reach_w : max_reach_w + reach_w + 1])
        if pending is None:
            found = result
            pending = (result > settled).nonzero().squeeze(1)
        else:
            found[pending] = result
            pending = pending[result > settled]
        if pending.numel() == 0:
            break
    return found


def _query_boxes(
    slab: Tensor, row: Tensor, pending: Tensor | None, num_forward: int, size_a: int
) -> list[tuple[int, int, int, int, int]]:
    """Per partner volume of unsettled queries, the box ``(volume, a0, a1, r0, r1)`` of the lines they read
    (``slab = volume · A + a`` and ``row = r`` of each): where the dense pass must run. The queries are sorted by
    volume (those of volume 0 read volume 1) and then by ``a``: the ``a`` bounds are the ends of each part."""
    if pending is not None:
        slab, row = slab[pending], row[pending]
    split = num_forward if pending is None else int(torch.searchsorted(pending, num_forward))
    parts = [part for part in ((0, split), (split, slab.numel())) if part[1] > part[0]]
    ends = [index for first, last in parts for index in (first, last - 1)]
    stats = torch.cat([slab[ends], *(torch.stack(torch.aminmax(row[first:last])) for first, last in parts)])
    stats = stats.tolist()
    boxes = []
    for k in range(len(parts)):
        a0, a1 = stats[2 * k], stats[2 * k + 1]
        r0, r1 = stats[2 * len(parts) + 2 * k : 2 * len(parts) + 2 * k + 2]
        volume = a0 // size_a
        boxes.append((volume, a0 - volume * size_a, a1 - volume * size_a, r0, r1))
    return boxes


def _dense_pass(box: Tensor, source: Tensor, a0: int, reached: int, reach: int, sq_step_a: float) -> None:
    """Grows the dense pass in ``box`` (na, nr, W), a view of the stage buffer at ``a0`` along ``a``, from reach
    ``reached`` (-1: ``box`` not written yet) to ``reach``: ``box[a] = min(box[a], fl(source[a ± da] +
    fl(da² s_a²)))`` for ``reached < da <= reach``, ``source`` (A, nr, W) holding R on the same lines."""
    size_a, a1 = source.shape[0], a0 + box.shape[0] - 1
    if reached < 0 and reach == 0:
        box.copy_(source[a0 : a1 + 1])
    for da in range(max(reached, 0) + 1, reach + 1):
        sq_offset = da * da * sq_step_a
        top = min(a1, size_a - 1 - da)  # box rows whose a + da is inside the volume
        if reached < 0 and da == 1:  # box does not hold R yet: this pass writes it
            if top >= a0:
                torch.minimum(source[a0 : top + 1], source[a0 + 1 : top + 2] + sq_offset, out=box[: top - a0 + 1])
            box[max(0, top - a0 + 1) :] = source[max(a0, top + 1) : a1 + 1]
        elif top >= a0:
            out = box[: top - a0 + 1]
            torch.minimum(out, source[a0 + da : top + da + 1] + sq_offset, out=out)
        bottom = max(a0, da)  # box rows whose a - da is inside the volume
        if bottom <= a1:
            out = box[bottom - a0 :]
            torch.minimum(out, source[bottom - da : a1 - da + 1] + sq_offset, out=out)


def _window_search(grid: Tensor, first: Tensor, sq_w: Tensor) -> Tensor:
    """``min_k fl(grid.flat[first + k] + sq_w[k])`` for each query, ``k < len(sq_w)``: the window along ``w`` of
    each query's line in the stage buffer; (Q,). Contiguous windows, read as rows of an unfolded view."""
    side = sq_w.numel()
    windows = grid.view(-1).unfold(0, side, 1)
    chunk = max(1, CHUNK_ELEMENTS // side)
    if first.numel() <= chunk:
        return (windows[first] + sq_w).amin(dim=1)
    return torch.cat([(windows[first[s : s + chunk]] + sq_w).amin(dim=1) for s in range(0, first.numel(), chunk)])


def _row_steps(volumes: Tensor) -> Tensor:
    """Steps ``|dr|`` from every voxel to the nearest True voxel of its ``r`` line (axis 2 of (K, A, R, W) bool),
    at least ``R`` where the line has none; uint8 for ``R < 128``, else int16.

    Doubling: after the passes with spans ``1, 2, 4, ...`` (each ``d(r) = min(d(r), d(r ± span) + span)``), every
    distance below twice the last span is exact, a sum of distinct powers of two taken in increasing order.
    """
    length = volumes.shape[2]
    if length >= NO_ROW:
        raise ValueError(f"volumes of {length} voxels along their finest axis: at most {NO_ROW - 1} are supported")
    # "none" is 128 (or NO_ROW): above any distance, and with any span added still in range.
    steps = (~volumes).view(torch.uint8)
    steps = steps * 128 if length < 128 else steps.to(torch.int16) * NO_ROW
    span = 1
    while span < length:
        upper, lower = steps.narrow(2, span, length - span), steps.narrow(2, 0, length - span)
        torch.minimum(upper, lower + span, out=upper)
        torch.minimum(lower, upper + span, out=lower)
        span *= 2
    return steps
