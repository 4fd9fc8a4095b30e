"""Projection head and encoders: shapes, BatchNorm on/off, gradients."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from reference import ProjectionHead, build_encoder


@pytest.mark.parametrize("batch_norm", [True, False])
@given(in_dim=st.integers(1, 64), hidden=st.integers(1, 64), out=st.integers(1, 64), n=st.integers(2, 16))
def test_head_shapes(batch_norm, in_dim, hidden, out, n):
    head = ProjectionHead(in_dim, hidden, out, batch_norm=batch_norm)
    assert head(torch.randn(n, in_dim)).shape == (n, out)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_head_layers(batch_norm):
    head = ProjectionHead(512, 256, 128, batch_norm=batch_norm)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 256), (256, 128)]
    assert any(isinstance(m, nn.ReLU) for m in head.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in head.modules()) == batch_norm


def test_head_batch_norm_normalises_hidden_layer():
    head = ProjectionHead(16, 32, 8, batch_norm=True).train()
    hidden = head.net[:2](torch.randn(64, 16) * 50 + 7)
    assert torch.allclose(hidden.mean(0), torch.zeros(32), atol=1e-4)
    assert torch.allclose(hidden.std(0, unbiased=False), torch.ones(32), atol=1e-2)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_head_gradients_reach_every_parameter(batch_norm):
    head = ProjectionHead(16, 32, 8, batch_norm=batch_norm)
    head(torch.randn(10, 16)).pow(2).sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("name, dim", [("small_cnn", 256), ("resnet18", 512)])
def test_encoder_output(name, dim):
    encoder = build_encoder(name).eval()
    with torch.no_grad():
        h = encoder(torch.randn(2, 3, 32, 32))
    assert h.shape == (2, dim) and encoder.out_dim == dim


def test_resnet18_is_adapted_to_cifar():
    encoder = build_encoder("resnet18")
    assert encoder.conv1.kernel_size == (3, 3) and encoder.conv1.stride == (1, 1)
    assert isinstance(encoder.maxpool, nn.Identity) and isinstance(encoder.fc, nn.Identity)


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("vgg")
