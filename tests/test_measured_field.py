"""Fields measured from gradient support (``unetlab.measured_field``), for models whose layers do not give them: they
agree with the theoretical fields where both exist, bound the gradient of any unit of a model whose fields are
refused, and ``unit_field``/``receptive_fields`` fall back to them, saying which (``field_kind``)."""

from __future__ import annotations

import pytest
import torch

from unetlab.measured_field import measured_keys, measured_unit_field
from unetlab.models import protocol
from unetlab.models.unet import UNet
from unetlab.receptive_field import field_kind, receptive_fields, unit_field

monai_nets = pytest.importorskip("monai.networks.nets")


def test_measured_fields_equal_the_theoretical_ones_of_our_unet():
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=4).eval()
    assert field_kind(net) == "theoretical"
    theoretical = receptive_fields(net)
    for key, measured in measured_keys(net).items():
        assert measured.jump == theoretical[key].jump
        if key.startswith("enc"):  # the encoder's fields do not depend on the unit's position
            assert measured.size == theoretical[key].size
            assert measured_unit_field(net, key, 5, 2) == unit_field(net, key, 5, 2)
        else:  # after up-sampling the theoretical size is the largest over positions
            assert measured.size <= theoretical[key].size


def test_a_refused_model_gets_measured_fields_that_bound_its_gradients():
    from unetlab.models.adapters import adapt

    torch.manual_seed(0)
    net = monai_nets.DynUNet(2, 1, 2, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2],
                             filters=[4, 8, 16, 16], norm_name="batch", res_block=True)  # fmt: skip
    u = adapt(net).eval()
    assert field_kind(u) == "measured"
    assert receptive_fields(u)["enc3"].jump == 8 and receptive_fields(u)["enc3"].size > receptive_fields(u)["enc1"].size
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    protocol.features(u, x)["enc2"][0, :, 5, 9].sum().backward()
    y0, y1, x0, x1 = unit_field(u, "enc2", 5, 9)
    touched = x.grad[0, 0].abs() > 0
    inside = torch.zeros_like(touched)
    inside[max(y0, 0) : y1, max(x0, 0) : x1] = True
    assert touched.any() and not (touched & ~inside).any()
    assert touched[max(y0, 0)].any() and touched[:, max(x0, 0)].any()  # and reaches the box's edges


def test_the_explorers_paths_of_a_measured_model_are_its_measured_boxes():
    from unetlab.models.adapters import adapt
    from unetlab.receptive_field import path_fields

    torch.manual_seed(0)
    net = monai_nets.DynUNet(2, 1, 2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
                             filters=[4, 8, 8], norm_name="batch", res_block=True)  # fmt: skip
    u = adapt(net).eval()
    ((name, (rows, cols)),) = path_fields(u, "enc1", (32, 32)).items()
    assert name == "measured" and len(rows) == len(cols) == 16
    y0, y1, x0, x1 = unit_field(u, "enc1", 3, 7)
    assert rows[3] == (y0, y1 - 1) and cols[7] == (x0, x1 - 1)
