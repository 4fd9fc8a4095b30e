"""Answer cells other than the reference solutions: correct variants and known mistakes.

The calibration (``autograder.calibrate``) trains with them and the test corpus (``tests/corpus.py``) grades them.
A variant replaces some answer cells of ``examples.solutions()``. ``CORRECT`` and ``BROKEN`` hold the variants
that change what the training run trains (it calls get_augmentations, ProjectionHead, nt_xent and train_epoch);
the rest (``TRAIN_LAST_LOSS``, the ``PROBE_*`` cells) train exactly as the reference does, so only the checks can
tell them apart.
"""
from __future__ import annotations

from autograder.course.examples import ZERO_GRAD_MISSING

# --- nt_xent ---------------------------------------------------------------------------------------------

LOSS_HEADER = "def nt_xent(z_i, z_j, temperature=0.5):\n"


def loss(body: str) -> str:
    """An ``nt_xent`` cell with the given body."""
    return LOSS_HEADER + body


LOSS_LOGSUMEXP = loss("""\
    n = z_i.shape[0]
    z = torch.cat([z_i, z_j], dim=0)
    z = z / z.norm(dim=1, keepdim=True)
    sim = z @ z.t() / temperature
    mask = ~torch.eye(2 * n, dtype=torch.bool)
    positives = torch.cat([torch.diag(sim, n), torch.diag(sim, -n)])
    negatives = sim.masked_select(mask).view(2 * n, 2 * n - 1)
    return (torch.logsumexp(negatives, dim=1) - positives).mean()
""")
LOSS_COSINE = loss("""\
    z = torch.cat([z_i, z_j])
    n2 = len(z)
    sim = F.cosine_similarity(z.unsqueeze(1), z.unsqueeze(0), dim=2) / temperature
    sim = sim - torch.eye(n2) * 1e9
    idx = torch.arange(n2)
    targets = (idx + n2 // 2) % n2
    return -F.log_softmax(sim, dim=1)[idx, targets].mean()
""")
# A correct loss that calls a helper defined in a code cell of its own above it (examples.with_cell_above): the
# grader takes that helper from the student's other cells, definitions only.
POSITIVE_TARGETS = '''\
def positive_targets(n):
    """Row k's positive among the 2N embeddings: its view in the other half."""
    return torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
'''
LOSS_WITH_HELPER = loss("""\
    z = F.normalize(torch.cat([z_i, z_j]).float(), dim=1)
    logits = (z @ z.T) / temperature
    logits.fill_diagonal_(float("-inf"))
    return F.cross_entropy(logits, positive_targets(len(z_i)).to(z.device))
""")
LOSS_SEED_002 = loss("""\
    cos = nn.CosineSimilarity(dim=1)
    pos_sim, neg_sim = cos(z_i, z_i).mean(), cos(z_j, z_j).mean()
    return -torch.log(torch.mean(F.softmax(pos_sim.reshape(1), dim=0))) / F.softmax(neg_sim.reshape(1), dim=0).mean()
""")
LOSS_SEED_004 = loss("""\
    features = F.normalize(torch.cat([z_i, z_j]), dim=1)
    similarity_matrix = features @ features.T / temperature
    return nn.CrossEntropyLoss()(similarity_matrix, torch.arange(features.size(0)))
""")
LOSS_SELF_SIMILARITY = loss("""\
    z = F.normalize(torch.cat([z_i, z_j]), dim=1)
    return F.cross_entropy(z @ z.T / temperature, torch.arange(2 * len(z_i)).roll(len(z_i)))
""")
LOSS_NO_L2 = loss("""\
    z = torch.cat([z_i, z_j])
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    return F.cross_entropy(logits, torch.arange(2 * len(z_i)).roll(len(z_i)))
""")
LOSS_TAU_MULTIPLIED = loss("""\
    z = F.normalize(torch.cat([z_i, z_j]), dim=1)
    logits = (z @ z.T * temperature).fill_diagonal_(float("-inf"))
    return F.cross_entropy(logits, torch.arange(2 * len(z_i)).roll(len(z_i)))
""")
LOSS_MEAN_OVER_N = loss("""\
    z = F.normalize(torch.cat([z_i, z_j]), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    targets = torch.arange(2 * len(z_i)).roll(len(z_i))
    return F.cross_entropy(logits, targets, reduction="sum") / len(z_i)
""")
LOSS_ONE_DIRECTION = loss("""\
    n = len(z_i)
    z = F.normalize(torch.cat([z_i, z_j]), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    return F.cross_entropy(logits[:n], torch.arange(n, 2 * n))
""")
LOSS_INTERLEAVED = loss("""\
    z = F.normalize(torch.cat([z_i, z_j]), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    return F.cross_entropy(logits, torch.arange(2 * len(z_i)) ^ 1)
""")

# --- get_augmentations -----------------------------------------------------------------------------------

AUGMENT_V2 = """\
from torchvision.transforms import v2

def get_augmentations(normalize=True):
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.RandomResizedCrop(32), v2.RandomHorizontalFlip(),
             v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    if normalize:
        steps.append(v2.Normalize(lab.CIFAR10_MEAN, lab.CIFAR10_STD))
    return v2.Compose(steps)
"""
AUGMENT_FLIP_FIRST = """\
def get_augmentations(normalize=True):
    colour = transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)
    steps = [transforms.RandomHorizontalFlip(), transforms.RandomResizedCrop(32, scale=(0.08, 1.0)), colour,
             transforms.RandomGrayscale(p=0.2), transforms.ToTensor()]
    return transforms.Compose(steps + ([transforms.Normalize(lab.CIFAR10_MEAN, lab.CIFAR10_STD)] if normalize else []))
"""
AUGMENT_NO_JITTER = """\
def get_augmentations(normalize=True):
    steps = [transforms.RandomResizedCrop(32), transforms.RandomHorizontalFlip(), transforms.RandomGrayscale(p=0.2),
             transforms.ToTensor()]
    return transforms.Compose(steps + ([transforms.Normalize(lab.CIFAR10_MEAN, lab.CIFAR10_STD)] if normalize else []))
"""
AUGMENT_DETERMINISTIC = """\
def get_augmentations(normalize=True):
    steps = [transforms.CenterCrop(32), transforms.ToTensor()]
    return transforms.Compose(steps + ([transforms.Normalize(lab.CIFAR10_MEAN, lab.CIFAR10_STD)] if normalize else []))
"""

# --- ProjectionHead --------------------------------------------------------------------------------------

HEAD_ATTRIBUTES = """\
class ProjectionHead(nn.Module):
    def __init__(self, in_dim=512, hidden_dim=512, out_dim=128, batch_norm=True):
        super().__init__()
        self.out = nn.Linear(hidden_dim, out_dim)
        self.norm = nn.BatchNorm1d(hidden_dim) if batch_norm else nn.Identity()
        self.inp = nn.Linear(in_dim, hidden_dim, bias=not batch_norm)

    def forward(self, h):
        return self.out(F.relu(self.norm(self.inp(h))))
"""
HEAD_NO_BN = """\
class ProjectionHead(nn.Module):
    def __init__(self, in_dim=512, hidden_dim=512, out_dim=128, batch_norm=True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, h):
        return self.mlp(h)
"""
HEAD_NO_RELU = """\
class ProjectionHead(nn.Module):
    def __init__(self, in_dim=512, hidden_dim=512, out_dim=128, batch_norm=True):
        super().__init__()
        layers = [nn.Linear(in_dim, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if batch_norm else [])
        self.mlp = nn.Sequential(*layers, nn.Linear(hidden_dim, out_dim))

    def forward(self, h):
        return self.mlp(h)
"""

# --- train_epoch -----------------------------------------------------------------------------------------

TRAIN_TEMPLATE = """\
def train_epoch(encoder, head, loader, optimizer, temperature=0.5, device="cpu", progress=True):
    encoder.train()
    head.train()
    losses = []
    for (x_i, x_j), _ in loader:
        x_i, x_j = x_i.to(device), x_j.to(device)
{body}
        losses.append(loss.item())
    return {result}
"""
STEP = "        optimizer.zero_grad(set_to_none=True)\n        loss.backward()\n        optimizer.step()"


def train(body: str, result: str = "float(np.mean(losses))") -> str:
    """A ``train_epoch`` cell whose loop computes ``loss`` with ``body`` and returns ``result``."""
    return TRAIN_TEMPLATE.format(body=body, result=result)


TRAIN_SEPARATE = train("        loss = nt_xent(head(encoder(x_i)), head(encoder(x_j)), temperature)\n" + STEP)
TRAIN_SAME_VIEW = train("        loss = nt_xent(head(encoder(x_i)), head(encoder(x_i)), temperature)\n" + STEP)
TRAIN_NO_ZERO_GRAD = ZERO_GRAD_MISSING  # the example the main job grades
TRAIN_LAST_LOSS = train("        loss = nt_xent(head(encoder(x_i)), head(encoder(x_j)), temperature)\n" + STEP,
                        result="losses[-1]")

# --- linear_probe (the training run probes with the reference's, so these never change its result) ---------

PROBE_TEMPLATE = """\
def linear_probe(encoder, train_loader, test_loader, num_classes=10, epochs=30, lr=1e-3, device="cpu", seed=0):
{features}
    mean, std = train_h.mean(0), train_h.std(0) + 1e-6
    train_h, test_h = (train_h - mean) / std, (test_h - mean) / std
    torch.manual_seed(seed)
    classifier = nn.Linear(train_h.shape[1], num_classes)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    for _ in range(epochs):
        loss = F.cross_entropy(classifier(train_h), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (classifier(test_h).argmax(1) == test_y).float().mean().item()
"""
OWN_FEATURES = """\
    def features(loader):
        with torch.no_grad():
            pairs = [(encoder(x.to(device)).cpu(), y) for x, y in loader]
        return torch.cat([h for h, _ in pairs]), torch.cat([y for _, y in pairs])
"""
OWN_FEATURES_CALLS = "    train_h, train_y = features(train_loader)\n    test_h, test_y = features(test_loader)"
PROBE_OWN_LOOP = PROBE_TEMPLATE.format(features="    was_training = encoder.training\n    encoder.eval()\n" + OWN_FEATURES
                                       + OWN_FEATURES_CALLS + "\n    encoder.train(was_training)")
PROBE_MODE_NOT_RESTORED = PROBE_TEMPLATE.format(features="    encoder.eval()\n" + OWN_FEATURES + OWN_FEATURES_CALLS)
PROBE_MODE_ALWAYS_TRAIN = PROBE_TEMPLATE.format(features="    encoder.eval()\n" + OWN_FEATURES + OWN_FEATURES_CALLS
                                                + "\n    encoder.train()")
PROBE_TRAIN_MODE = PROBE_TEMPLATE.format(features=OWN_FEATURES + OWN_FEATURES_CALLS)
PROBE_NOT_FROZEN = """\
def linear_probe(encoder, train_loader, test_loader, num_classes=10, epochs=30, lr=1e-3, device="cpu", seed=0):
    torch.manual_seed(seed)
    dim = encoder(next(iter(train_loader))[0].to(device)).shape[1]
    classifier = nn.Linear(dim, num_classes)
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(classifier.parameters()), lr=lr)
    for _ in range(epochs):
        for x, y in train_loader:
            loss = F.cross_entropy(classifier(encoder(x.to(device))), y.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    encoder.eval()
    with torch.no_grad():
        right = sum((classifier(encoder(x.to(device))).argmax(1) == y.to(device)).sum().item() for x, y in test_loader)
    return right / sum(len(y) for _, y in test_loader)
"""

# --- the variants the training run trains differently ------------------------------------------------------

# name -> the answer cells that replace the reference's ({} is the reference itself)
CORRECT: dict[str, dict[str, str]] = {
    "reference": {},
    "correct_loss_logsumexp": {"nt_xent": LOSS_LOGSUMEXP},
    "correct_loss_cosine": {"nt_xent": LOSS_COSINE},
    "correct_augment_v2": {"get_augmentations": AUGMENT_V2},
    "correct_augment_flip_first": {"get_augmentations": AUGMENT_FLIP_FIRST},
    "correct_head_attributes": {"ProjectionHead": HEAD_ATTRIBUTES},
    "correct_train_separate": {"train_epoch": TRAIN_SEPARATE},
}

# name -> (what is wrong, the answer cells that replace the reference's)
BROKEN: dict[str, tuple[str, dict[str, str]]] = {
    "loss_seed_002": ("seed 002's loss (a softmax over one value: a constant)", {"nt_xent": LOSS_SEED_002}),
    "loss_seed_004": ("seed 004's loss (each view its own positive, nothing masked)", {"nt_xent": LOSS_SEED_004}),
    "loss_self_similarity": ("self-similarity not excluded", {"nt_xent": LOSS_SELF_SIMILARITY}),
    "loss_no_l2": ("no L2 normalisation", {"nt_xent": LOSS_NO_L2}),
    "loss_tau_multiplied": ("temperature multiplied instead of divided", {"nt_xent": LOSS_TAU_MULTIPLIED}),
    "loss_mean_over_n": ("sum over 2N anchors divided by N", {"nt_xent": LOSS_MEAN_OVER_N}),
    "loss_one_direction": ("only the anchors of the first view", {"nt_xent": LOSS_ONE_DIRECTION}),
    "loss_interleaved": ("positives picked as if the views were interleaved", {"nt_xent": LOSS_INTERLEAVED}),
    "augment_no_jitter": ("no colour jitter", {"get_augmentations": AUGMENT_NO_JITTER}),
    "augment_deterministic": ("no random step: both views are the same", {"get_augmentations": AUGMENT_DETERMINISTIC}),
    "head_no_batchnorm": ("BatchNorm never added", {"ProjectionHead": HEAD_NO_BN}),
    "head_no_relu": ("no ReLU: the head is linear", {"ProjectionHead": HEAD_NO_RELU}),
    "train_same_view": ("the same augmented view for both branches", {"train_epoch": TRAIN_SAME_VIEW}),
    "train_no_zero_grad": ("optimizer.zero_grad missing", {"train_epoch": TRAIN_NO_ZERO_GRAD}),
}
