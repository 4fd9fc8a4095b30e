"""Measure the training run's pass mark on the grading machine: ``python -m autograder.calibrate [options]``.

The command trains the course's encoder with the reference solutions and the correct variants of
``autograder.course.variants`` over several seeds, and with known mistakes over a few, exactly as grading does (the
student process, ``c.TrainingRun``'s budget and device), and probes each encoder. It writes a JSON record (every
accuracy, the versions, the device, the budget, the time per run) and suggests
``min_probe_accuracy = lowest correct accuracy - margin``, then says which mistakes that mark fails. It prints
the line for ``nbgrader_config.py`` and does not edit that file.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from simclr_helpers import PRESETS
from simclr_helpers.checks import StudentCodeError

from autograder.boundary import isolation
from autograder.course.examples import solutions
from autograder.grade import course_config, course_limits
from autograder.checks.registry import COMPONENTS
from autograder.course.nbgrader_commands import COURSE_ROOT
from autograder.checks.grading import training_sandbox
from autograder.boundary.sandbox import Limits
from autograder.checks.training_run import TrainingRunSettings, device_available, preflight, probe_run
from autograder.course.variants import BROKEN, CORRECT


@dataclass
class Run:
    """One training run of one variant: its probe accuracy in [0, 1], or the error that stopped it."""
    variant: str
    kind: str  # "correct" or "broken"
    seed: int
    accuracy: float | None
    seconds: float
    last_loss: float | None = None
    error: str = ""


def variant_cells(changes: dict[str, str], root: Path = COURSE_ROOT) -> list[tuple[str, str]]:
    """The answer cells of a submission: the source's solutions with ``changes`` put in, in notebook order."""
    answers = {**solutions(root), **changes}
    return [(name, answers[name]) for name in COMPONENTS]


def train_and_probe(cells: list[tuple[str, str]], settings: TrainingRunSettings, limits: Limits,
                    variant: str = "", kind: str = "") -> Run:
    """One graded training run of ``cells`` with ``settings`` (its seed included), on a fresh student process."""
    start = time.monotonic()
    with training_sandbox(cells, limits, settings) as sandbox:
        try:
            sandbox.ensure_started()
            sandbox.start_check(settings.timeout_s, wall_clock=True)
            result = probe_run(sandbox, settings)
        except Exception as error:  # noqa: BLE001 - a run that fails is recorded; grading would fail it too
            message = str(error) if isinstance(error, StudentCodeError) else f"{type(error).__name__}: {error}"
            return Run(variant, kind, settings.seed, None, round(time.monotonic() - start, 1), error=message[:500])
    last = result.losses[-1] if result.losses else None
    return Run(variant, kind, settings.seed, result.accuracy, round(time.monotonic() - start, 1), last)


def suggest(runs: list[Run], margin: float) -> dict:
    """The suggested pass mark (lowest correct accuracy - margin, rounded down to 0.1 %) and what it separates.

    A broken variant is separated when every one of its runs is below the mark or failed (grading fails those too).
    No mark is suggested when a correct run failed: grading would fail it whatever the mark.
    """
    correct = [r for r in runs if r.kind == "correct"]
    failed = sorted({r.variant for r in correct if r.accuracy is None})
    lowest = min((r.accuracy for r in correct if r.accuracy is not None), default=None)
    mark = None
    if lowest is not None and not failed:
        mark = max(0.0, math.floor(round((lowest - margin) * 1000, 6)) / 1000)  # round: float noise
    separated = {}
    for name in dict.fromkeys(r.variant for r in runs if r.kind == "broken"):
        accuracies = [r.accuracy for r in runs if r.variant == name]
        separated[name] = None if mark is None else all(a is None or a < mark for a in accuracies)
    return {"lowest_correct_accuracy": lowest, "failed_correct_variants": failed, "margin": margin,
            "suggested_min_probe_accuracy": mark, "separated": separated,
            "not_separated": [name for name, ok in separated.items() if ok is False]}


def device_name(device: str) -> str:
    """The accelerator's name (``torch.cuda.get_device_name`` for cuda), else the processor's."""
    import torch
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine() or device


def environment(settings: TrainingRunSettings) -> dict:
    """Versions and hardware the accuracies were measured with."""
    import nbgrader
    import torch
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "nbgrader": nbgrader.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "device": settings.device, "device_name": device_name(settings.device)}


def default_out(root: Path, settings: TrainingRunSettings) -> Path:
    """``autograder/calibration/<device>.json``, the device as a file name (``cpu``, ``nvidia-...``)."""
    name = "cpu" if settings.device == "cpu" else device_name(settings.device)
    return root / "autograder" / "calibration" / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".json")


def calibrate(settings: TrainingRunSettings, limits: Limits, correct: dict[str, dict[str, str]],
              broken: dict[str, tuple[str, dict[str, str]]], seeds_correct: int, seeds_broken: int, margin: float,
              root: Path = COURSE_ROOT, log: Callable[[str], None] = print) -> dict:
    """Run every variant over its seeds and return the record (see the module's docstring)."""
    plan = [(name, "correct", changes, seed) for name, changes in correct.items() for seed in range(seeds_correct)]
    plan += [(name, "broken", changes, seed) for name, (_, changes) in broken.items() for seed in range(seeds_broken)]
    runs: list[Run] = []
    start = time.monotonic()
    for index, (name, kind, changes, seed) in enumerate(plan, 1):
        run_settings = dataclasses.replace(settings, seed=seed, min_probe_accuracy=None)
        run = train_and_probe(variant_cells(changes, root), run_settings, limits, name, kind)
        runs.append(run)
        result = f"{100 * run.accuracy:.1f} %" if run.accuracy is not None else f"failed: {run.error}"
        left = (time.monotonic() - start) / index * (len(plan) - index)
        log(f"[{index}/{len(plan)}] {kind:7} {name} seed {seed}: {result} ({run.seconds:.0f} s; "
            f"about {left / 60:.0f} min left)")
    descriptions = {name: what for name, (what, _) in broken.items()}
    variants = {}
    for name in dict.fromkeys(r.variant for r in runs):
        mine = [r for r in runs if r.variant == name]
        measured = [r.accuracy for r in mine if r.accuracy is not None]
        variants[name] = {"kind": mine[0].kind, "description": descriptions.get(name, ""),
                          "accuracies": [r.accuracy for r in mine], "min": min(measured, default=None),
                          "max": max(measured, default=None)}
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(settings),
            "settings": {"preset": settings.preset, "overrides": settings.overrides, "device": settings.device,
                         "timeout_s": settings.timeout_s},
            "budget": settings.budget(), "seeds_correct": seeds_correct, "seeds_broken": seeds_broken,
            "seconds_total": round(time.monotonic() - start, 1),
            "runs": [dataclasses.asdict(r) for r in runs], "variants": variants, **suggest(runs, margin)}


def config_line(record: dict) -> str:
    return f"c.TrainingRun.min_probe_accuracy = {record['suggested_min_probe_accuracy']}"


def report(record: dict) -> list[str]:
    """The plain-text summary the command prints."""
    def pct(value: float | None) -> str:
        return "failed" if value is None else f"{100 * value:.1f}"
    lines = [f"{'variant':28} {'kind':7}  probe accuracy % per seed"]
    for name, v in record["variants"].items():
        lines.append(f"{name:28} {v['kind']:7}  {' '.join(pct(a) for a in v['accuracies'])}")
    mark = record["suggested_min_probe_accuracy"]
    if mark is None:
        failed = ", ".join(record["failed_correct_variants"]) or "none measured"
        return lines + [f"no pass mark: correct variants failed to train ({failed}); see their errors in the record"]
    lines.append(f"suggested pass mark {pct(mark)} % (lowest correct {pct(record['lowest_correct_accuracy'])} % "
                 f"- margin {pct(record['margin'])} %)")
    separated = [name for name, ok in record["separated"].items() if ok]
    lines.append(f"separated (every run below the mark): {', '.join(separated) or 'none'}")
    if record["not_separated"]:
        best = {name: record["variants"][name]["max"] for name in record["not_separated"]}
        lines.append("NOT separated by the training run (only the component checks catch these): "
                     + ", ".join(f"{name} (best {pct(a)} %)" for name, a in best.items()))
    return lines + ["put this line into nbgrader_config.py:", config_line(record)]


def main(argv: list[str] | None = None) -> int:
    names = [*CORRECT, *BROKEN]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=COURSE_ROOT, help="course root (nbgrader_config.py, source/)")
    parser.add_argument("--seeds-correct", type=int, default=5, help="seeds per correct variant (default 5)")
    parser.add_argument("--seeds-broken", type=int, default=3, help="seeds per broken variant (default 3)")
    parser.add_argument("--device", help="default: c.TrainingRun.device")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="budget (default: c.TrainingRun.preset)")
    parser.add_argument("--overrides", type=json.loads,
                        help='JSON budget fields, in place of c.TrainingRun.overrides, e.g. \'{"epochs": 5}\'')
    parser.add_argument("--variants", nargs="+", choices=names, metavar="NAME",
                        help=f"only these variants (default: all): {', '.join(names)}")
    parser.add_argument("--margin", type=float, default=0.02, help="mark = lowest correct accuracy - margin")
    parser.add_argument("--out", type=Path, help="default: <root>/autograder/calibration/<device>.json")
    args = parser.parse_args(argv)

    config = course_config(args.root)
    settings = TrainingRunSettings.from_config(config)
    chosen = {k: v for k, v in (("device", args.device), ("preset", args.preset), ("overrides", args.overrides))
              if v is not None}
    settings = dataclasses.replace(settings, **chosen, min_probe_accuracy=None)
    if settings.device == "cpu":
        settings = dataclasses.replace(settings, without_device="run_anyway")
    elif not device_available(settings.device):
        parser.error(f"no {settings.device} device here: calibrate on the grading machine (or pass --device cpu "
                     "for a CPU budget)")
    preflight(settings)
    limits = course_limits(config)
    try:
        isolation.require(limits.sandbox)
    except isolation.SandboxUnavailable as error:
        raise SystemExit(f"not calibrating: {error}") from None
    selected = args.variants or names
    correct = {n: CORRECT[n] for n in selected if n in CORRECT}
    broken = {n: BROKEN[n] for n in selected if n in BROKEN}
    if not correct:
        parser.error("choose at least one correct variant: the mark comes from them")
    print(f"== {len(correct)} correct x {args.seeds_correct} seeds, {len(broken)} broken x {args.seeds_broken} seeds; "
          f"preset {settings.preset} {settings.overrides} on {settings.device}", flush=True)
    record = calibrate(settings, limits, correct, broken, args.seeds_correct, args.seeds_broken,
                       args.margin, args.root, log=lambda line: print(line, flush=True))
    out = args.out or default_out(args.root, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print("\n" + "\n".join(report(record)) + f"\n\nrecord: {out}")
    return 0 if record["suggested_min_probe_accuracy"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
