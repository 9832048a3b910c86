"""Which BatchNorm2d and PReLU a network holds: PyTorch's as facestra builds, loads and exports it (so that
torch.fx and torch.func work on it), facestra's faster subclasses once training places it on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facestra import models
from facestra.models.batch_norm import BatchNorm2d
from facestra.models.cpu_layers import use_faster_cpu_layers
from facestra.models.prelu import PReLU
from facestra.train import distributed
from facestra.train.config import TrainConfig
from facestra.train.heads import ClassifierHead
from facestra.train.network import place


def _layers(network: nn.Module) -> list[type]:
    return [type(m) for m in network.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.PReLU)) and type(m) is not nn.BatchNorm1d]


@pytest.mark.parametrize("arch", ["resnet18", "iresnet18"])
def test_built_networks_hold_pytorchs_layers_which_fx_and_func_handle(arch):
    network = models.create(arch, width=0.125, input_size=(32, 32), embedding_size=16).eval()
    assert set(_layers(network)) == {nn.BatchNorm2d, nn.PReLU}
    x = torch.randn(2, 3, 32, 32)
    traced = torch.fx.symbolic_trace(network)
    assert torch.equal(traced(x), network(x))
    jacobian = torch.func.jacrev(network)(x[:1])
    assert jacobian.shape == (1, 16, 1, 3, 32, 32)


def test_the_swap_keeps_every_layer_object_and_tensor_and_leaves_other_subclasses():
    network = models.create("iresnet18", width=0.125, input_size=(32, 32))
    network.bn2 = distributed.DistributedBatchNorm(network.bn2.num_features)  # a synced BatchNorm stays synced
    before = network.state_dict(keep_vars=True)
    modules = dict(network.named_modules())
    assert use_faster_cpu_layers(network) is network
    assert dict(network.named_modules()) == modules
    after = network.state_dict(keep_vars=True)
    assert list(after) == list(before) and all(after[key] is before[key] for key in before)  # the very same tensors
    assert type(network.bn2) is distributed.DistributedBatchNorm
    assert set(_layers(network)) == {BatchNorm2d, PReLU, distributed.DistributedBatchNorm}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))])
def test_training_places_them_on_the_cpu_only(device):
    backbone = models.create("resnet18", width=0.125, input_size=(32, 32), embedding_size=16)
    config = TrainConfig(data="synthetic", out="unused", arch="resnet18")
    network = place(backbone, ClassifierHead(16, 4, loss="softmax"), config, distributed.Process(device=torch.device(device)))
    expected = {BatchNorm2d, PReLU} if device == "cpu" else {nn.BatchNorm2d, nn.PReLU}
    assert set(_layers(network.backbone)) == expected
