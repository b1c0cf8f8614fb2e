"""BoundaryMetrics and ObjectMetrics under DDP: two gloo CPU processes on a split batch equal one process."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unetlab.metrics import BoundaryMetrics, ObjectMetrics

# Unequal shares, and two updates on rank 1, so the gather has to pad and trim.
SPLITS = ((0, 3), (3, 5), (5, 8))
RANK_BATCHES = ((SPLITS[0],), (SPLITS[1], SPLITS[2]))


def label_maps() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, 4, (8, 6, 7), generator=generator)
    target = coarse.repeat_interleave(5, dim=1).repeat_interleave(5, dim=2)
    pred = torch.roll(target, shifts=(2, -1), dims=(1, 2))
    flip = torch.rand(pred.shape, generator=generator) < 0.03
    pred[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=generator)
    pred[0][pred[0] == 2] = 0
    target[:, :2, :3] = 255
    return pred, target


def _run_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        pred, target = label_maps()
        metric = BoundaryMetrics(num_classes=4, tolerances=(1.0, 4.0))
        objects = ObjectMetrics(num_classes=4)
        for start, stop in RANK_BATCHES[rank]:
            metric.update(pred[start:stop], target[start:stop])
            objects.update(pred[start:stop], target[start:stop])
        result = {"compute": metric.compute(), "summary": metric.summary(), "tolerances": metric.tolerance_values()}
        result |= {"objects": objects.compute(), "object_sums": objects.per_image_values()}
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    pred, target = label_maps()
    single = BoundaryMetrics(num_classes=4, tolerances=(1.0, 4.0))
    single.update(pred, target)
    expected_compute, expected_summary = single.compute(), single.summary()
    objects = ObjectMetrics(num_classes=4)
    objects.update(pred, target)
    expected_objects = objects.compute()

    mp.spawn(_run_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)

    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["compute"].keys() == expected_compute.keys()
        for key, value in expected_compute.items():
            assert torch.equal(result["compute"][key], value), (rank, key)
        assert result["summary"] == expected_summary
        assert all(row["n"] == 8 for row in result["summary"])
        assert torch.equal(result["tolerances"], single.tolerance_values())
        assert torch.equal(result["object_sums"], objects.per_image_values())  # every image, in order
        assert result["objects"].keys() == expected_objects.keys()
        for key, value in expected_objects.items():
            assert torch.equal(result["objects"][key], value) or (value.isnan() and result["objects"][key].isnan())
        assert objects.per_image_values()[..., 0].sum() > 0  # the maps hold objects
