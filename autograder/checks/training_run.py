"""The graded training run: the student's components train the course's encoder; the checker probes it.

Settings come from ``c.TrainingRun`` in ``nbgrader_config.py``. The minimum probe accuracy must be measured on
the grading GPU (the calibration issue); until it is set, and on a machine without the required device, the
cell's points follow the checks of the four components the run uses, as ``without_device`` says.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from simclr_helpers import PRESETS, build_encoder, load_lab_data, resolve_data_dir

RUN_COMPONENT_CELLS = ("test_get_augmentations", "test_get_augmentations_hidden", "test_projection_head",
                       "test_projection_head_hidden", "test_nt_xent", "test_nt_xent_formula_hidden",
                       "test_nt_xent_properties_hidden", "test_train_epoch", "test_train_epoch_hidden")


@dataclass(frozen=True)
class TrainingRunSettings:
    """``preset``: the budget (a name in PRESETS) with ``overrides``; ``device``: where the run must happen;
    ``min_probe_accuracy``: the pass mark (None: not calibrated); ``without_device``: "follow_checks" (points
    when the component checks pass), "zero", or "run_anyway" (run on what there is, e.g. a CPU test budget)."""
    preset: str = "gpu"
    overrides: dict = field(default_factory=lambda: {"epochs": 5})
    device: str = "cuda"
    min_probe_accuracy: float | None = None
    without_device: str = "follow_checks"
    timeout_s: float = 900.0
    seed: int = 0

    @classmethod
    def from_config(cls, config) -> "TrainingRunSettings":
        section = config.get("TrainingRun", {})
        return cls(**{f.name: section[f.name] for f in dataclasses.fields(cls) if f.name in section})

    def budget(self) -> dict:
        return dataclasses.asdict(dataclasses.replace(PRESETS[self.preset], **self.overrides))


def device_available(device: str) -> bool:
    return device == "cpu" or (device == "cuda" and torch.cuda.is_available()) or (
        device == "mps" and torch.backends.mps.is_available())


def will_run(settings: TrainingRunSettings) -> bool:
    return device_available(settings.device) or settings.without_device == "run_anyway"


def data_problem(settings: TrainingRunSettings) -> str:
    """Empty if this machine can do the training run (or need not); otherwise what is missing and what to do."""
    if will_run(settings) and not (resolve_data_dir() / "train").is_dir():
        return (f"the training run needs CIFAR-10 and none was found at {resolve_data_dir()}: run "
                "`bash setup.sh --setup-only` (it unpacks ../shared/data/cifar10-jpeg.tar.gz) or set "
                "CIFAR10_DIR; or set c.TrainingRun.without_device so the run is not needed here")
    return ""


def preflight(settings: TrainingRunSettings) -> None:
    """Before grading: the run needs CIFAR-10 on this machine; say so once instead of failing every student."""
    problem = data_problem(settings)
    if problem:
        raise SystemExit(problem)


@dataclass(frozen=True)
class ProbeRun:
    """What one training run measured: the linear probe's accuracy in [0, 1] and where it ran."""
    accuracy: float
    device: str
    epochs: int
    encoder: str
    losses: tuple[float, ...] = ()

    @property
    def summary(self) -> str:
        return (f"linear probe {100 * self.accuracy:.1f} % after {self.epochs} epochs of {self.encoder} "
                f"on {self.device}")


def probe_run(student, settings: TrainingRunSettings) -> ProbeRun:
    """Train the course's encoder with the student's components (``student.run``) and probe it; no pass mark."""
    device = settings.device if device_available(settings.device) else "cpu"
    budget = settings.budget()
    result = student.run("training_run", preset=budget, data_dir=str(resolve_data_dir().absolute()), device=device,
                         seed=settings.seed)
    encoder = build_encoder(budget["encoder"])
    encoder.load_state_dict(result["encoder"])
    from reference.evaluate import linear_probe
    preset = PRESETS[settings.preset].__class__(**budget)
    data = load_lab_data(preset, seed=settings.seed, root=str(resolve_data_dir()))
    accuracy = linear_probe(encoder.to(device), data.probe_train, data.probe_test, epochs=preset.probe_epochs,
                            device=device)
    return ProbeRun(accuracy, device, preset.epochs, preset.encoder, tuple(result["losses"]))


def training_run(student, settings: TrainingRunSettings, components_pass: bool) -> str:
    """Run (or stand in for) the training run; return a line for the feedback, raise AssertionError on failure."""
    follow = "the points follow the checks of get_augmentations, ProjectionHead, nt_xent and train_epoch"
    if not will_run(settings):
        if settings.without_device == "zero":
            raise AssertionError(f"not run: the training run needs a {settings.device} device and this machine has "
                                 "none; the instructor must regrade on one")
        assert components_pass, f"not run (no {settings.device} device here); {follow}, and one of them failed"
        return f"not run (no {settings.device} device here); {follow}: they pass"
    run = probe_run(student, settings)
    summary = run.summary
    if settings.min_probe_accuracy is None:
        assert components_pass, f"{summary}; no pass mark is set yet, so {follow}, and one of them failed"
        return f"{summary}; no pass mark is set yet, so {follow}: they pass"
    assert run.accuracy >= settings.min_probe_accuracy, (
        f"{summary}, below the pass mark of {100 * settings.min_probe_accuracy:.1f} %")
    return f"{summary} (pass mark {100 * settings.min_probe_accuracy:.1f} %)"
