"""linear_probe and the other frozen-encoder evaluations."""
import copy

import torch
from torch import nn

from reference import knn_accuracy, linear_probe, tsne_2d


def separable_loaders(n=400, d=8, seed=0):
    """Images whose mean colour encodes the class: linearly separable through a flatten encoder."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    centres = 3 * torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]])
    x = centres[labels][:, :, None, None] + 0.3 * torch.randn(n, 3, 2, 2, generator=gen)
    split = n * 3 // 4
    batches = lambda a, b: [(x[i:i + 50], labels[i:i + 50]) for i in range(a, b, 50)]
    return batches(0, split), batches(split, n)


def bn_encoder():
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Flatten())


def test_encoder_is_untouched():
    torch.manual_seed(0)
    encoder = bn_encoder().train()
    encoder[0].bias.requires_grad_(False)
    before = copy.deepcopy(encoder.state_dict())
    flags = [p.requires_grad for p in encoder.parameters()]
    train, test = separable_loaders()
    linear_probe(encoder, train, test, num_classes=4, epochs=5)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"
    assert [p.requires_grad for p in encoder.parameters()] == flags
    assert all(p.grad is None for p in encoder.parameters()), "a gradient reached the encoder"
    assert encoder.training, "the encoder's mode was not restored"


def test_accuracy_near_one_on_separable_features():
    torch.manual_seed(0)
    train, test = separable_loaders()
    accuracy = linear_probe(bn_encoder(), train, test, num_classes=4, epochs=200, lr=1e-2)
    assert 0.95 <= accuracy <= 1.0


def test_accuracy_is_chance_on_noise():
    torch.manual_seed(0)
    train, test = separable_loaders()
    shuffled = [(x, y[torch.randperm(len(y))]) for x, y in test]
    accuracy = linear_probe(bn_encoder(), train, shuffled, num_classes=4, epochs=30)
    assert 0.0 <= accuracy < 0.5


def test_knn_accuracy():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 5
    features = torch.eye(5)[labels] + 0.1 * torch.randn(200, 5, generator=gen)
    assert knn_accuracy(features[:150], labels[:150], features[150:], labels[150:], k=10) == 1.0
    noise = torch.randn(200, 5, generator=gen)
    assert knn_accuracy(noise[:150], labels[:150], noise[150:], labels[150:], k=10) < 0.5


def test_tsne_shape():
    points = tsne_2d(torch.randn(60, 16), seed=0)
    assert points.shape == (60, 2)


def _probe_student(source: str):
    """The ops run in this process on a namespace holding ``linear_probe`` from ``source``."""
    from simclr_helpers import checks, definitions
    namespace = {"__name__": "__main__"}
    exec(definitions.NOTEBOOK_IMPORTS, namespace)
    exec(source, namespace)
    return checks.InKernel(namespace)


def test_the_probe_checks_keep_the_encoders_mode():
    """The contract's "train/eval mode the same afterwards": the visible check starts in train mode, the hidden one
    (also) in eval mode; a probe that puts the mode back passes both."""
    import pytest

    from autograder.checks import hidden_checks
    from autograder.course.variants import PROBE_MODE_ALWAYS_TRAIN, PROBE_MODE_NOT_RESTORED, PROBE_OWN_LOOP
    from simclr_helpers import checks
    checks.check_linear_probe(_probe_student(PROBE_OWN_LOOP))
    hidden_checks.linear_probe(_probe_student(PROBE_OWN_LOOP))
    with pytest.raises(AssertionError, match="in training mode before linear_probe and is in eval mode after"):
        checks.check_linear_probe(_probe_student(PROBE_MODE_NOT_RESTORED))
    hidden_checks.linear_probe(_probe_student(PROBE_MODE_NOT_RESTORED))   # eval mode kept: the visible test's
    checks.check_linear_probe(_probe_student(PROBE_MODE_ALWAYS_TRAIN))    # train mode kept: the hidden test's
    with pytest.raises(AssertionError, match="in eval mode before linear_probe and in training mode after"):
        hidden_checks.linear_probe(_probe_student(PROBE_MODE_ALWAYS_TRAIN))
