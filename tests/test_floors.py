import torch

from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation.floors import resolution_floor


def test_level_zero_is_the_ground_truth_and_blocks_are_recovered_exactly():
    masks = torch.zeros(1, 16, 16, dtype=torch.long)
    masks[0, 4:12, 4:12] = 1  # aligned to 4x4 blocks: a level-2 map can hold it exactly...
    assert torch.equal(resolution_floor(masks, 0, 2), masks)
    floor2 = resolution_floor(masks, 2, 2)
    # ...but bilinear upsampling of the 4x4 block map rounds the corners off
    assert floor2[0, 8, 8] == 1 and floor2[0, 0, 0] == 0
    assert (floor2 != masks).sum() > 0
    one_pixel_bar = torch.zeros(1, 16, 16, dtype=torch.long)
    one_pixel_bar[0, :, 7] = 1
    assert resolution_floor(one_pixel_bar, 1, 2).sum() == 0  # a 1 px bar is half of every 2x2 cell: gone


def test_floors_never_improve_with_depth_on_shapes():
    dm = ShapesDataModule(image_size=64, train_size=1, val_size=1, test_size=64)
    masks = dm.build_split("test").masks
    errors = []
    for level in range(6):
        floor = resolution_floor(masks, level, 2)
        errors.append((floor != masks).float().mean().item())
    assert errors[0] == 0
    assert all(a <= b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] > 5 * errors[1]


def test_multiclass_floor_picks_the_majority_class_and_ignores_255():
    masks = torch.zeros(1, 8, 8, dtype=torch.long)
    masks[0, :, :4] = 2
    masks[0, :, 4:] = 3
    masks[0, 0, 0] = 255
    floor = resolution_floor(masks, 1, 4)
    assert set(floor.unique().tolist()) == {2, 3}
    assert (floor[0, :, :3] == 2).all() and (floor[0, :, 5:] == 3).all()
