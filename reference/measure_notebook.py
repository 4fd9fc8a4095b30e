"""Execute the lab notebook headless under one preset and record how long it took and what it reached.

    python -m reference.measure_notebook --preset cpu      # writes reference/measurements/notebook_cpu.json

The optional exercises' runs (off in the notebook) are switched on in the executed copy, and every code cell is
timed, so the record holds a student's path: the compute of the required cells and of each optional exercise.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "source" / "simclr" / "simclr_lab.ipynb"
MEASUREMENTS = ROOT / "reference" / "measurements"

# Appended to the executed copy only: prints the notebook's results as one JSON line.
REPORT_CELL = """
import json as _json
_results = dict(probe=probe, knn=knn, h_vs_z=h_vs_z, supervised=comparison, losses=losses,
                exercises=dict(augmentations=augmentation_results, temperature=temperature_results,
                               batch_size=batch_results, head=head_results),
                stage_seconds=timer.seconds, device=str(device), environment=lab.describe_environment(device))
print("RESULTS " + _json.dumps(_results))
"""


# The optional exercises' switches, turned on for the measurement (STL-10 and MoCo stay off: a 2.6 GB download,
# and a variant the release does not solve).
OPTIONAL_RUNS = ("RUN_BATCH_SIZE", "RUN_HEAD_VARIANTS", "RUN_SUPERVISED")


def execute(preset: str, notebook: Path = NOTEBOOK, timeout: int = 1800
            ) -> tuple[nbformat.NotebookNode, float, dict[int, float]]:
    """Run every cell of ``notebook`` under ``preset`` in a fresh kernel (optional runs on); return it executed,
    the seconds taken, and each code cell's seconds by index."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            for switch in OPTIONAL_RUNS:
                cell.source = re.sub(rf"(?m)^{switch} = False", f"{switch} = True", cell.source)
    nb.cells.append(nbformat.v4.new_code_cell(REPORT_CELL))
    os.environ["SIMCLR_PRESET"] = preset
    started, seconds = {}, {}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(notebook.parent)}},
                            on_cell_start=lambda cell, cell_index: started.__setitem__(cell_index, time.perf_counter()),
                            on_cell_executed=lambda cell, cell_index, execute_reply: seconds.__setitem__(
                                cell_index, round(time.perf_counter() - started[cell_index], 2)))
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start, seconds


def student_path(nb: nbformat.NotebookNode, seconds: dict[int, float]) -> dict:
    """Compute time by section, required against optional (a section whose heading says "Optional")."""
    section, optional, by_section = "", False, {}
    for index, cell in enumerate(nb.cells[:-1]):  # the report cell is not the student's
        if cell.cell_type == "markdown" and cell.source.startswith("#"):
            heading = cell.source.splitlines()[0].lstrip("#").strip()
            if cell.source.startswith("## ") or cell.source.startswith("### "):
                section, optional = heading, "Optional" in heading
        elif cell.cell_type == "code":
            entry = by_section.setdefault(section, {"optional": optional, "seconds": 0.0})
            entry["seconds"] = round(entry["seconds"] + seconds.get(index, 0.0), 1)
    required = sum(v["seconds"] for v in by_section.values() if not v["optional"])
    return dict(required_s=round(required, 1),
                optional_s=round(sum(v["seconds"] for v in by_section.values() if v["optional"]), 1),
                by_section=by_section)


def errors(nb: nbformat.NotebookNode) -> list[str]:
    """``"cell N: Error: message"`` for every cell whose output holds an error."""
    return [f"cell {i}: {o.ename}: {o.evalue}" for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for o in cell.outputs if o.output_type == "error"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--out", type=Path, help="JSON record (default reference/measurements/notebook_<preset>.json)")
    parser.add_argument("--executed", type=Path, help="also save the executed notebook here (e.g. to export as HTML)")
    args = parser.parse_args(argv)
    nb, seconds, cell_seconds = execute(args.preset)
    if args.executed:
        nbformat.write(nb, args.executed)
    report = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    results = json.loads(report.split("RESULTS ", 1)[1]) if "RESULTS " in report else {}
    record = dict(preset=args.preset, notebook_seconds=round(seconds, 1), errors=errors(nb),
                  student_path=student_path(nb, cell_seconds), **results,
                  versions=dict(python=platform.python_version(), torch=torch.__version__,
                                cpu_count=os.cpu_count(), machine=platform.machine()))
    out = args.out or MEASUREMENTS / f"notebook_{args.preset}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    path = record["student_path"]
    print(f"{args.preset}: {seconds:.0f} s (required cells {path['required_s']:.0f} s, optional exercises "
          f"{path['optional_s']:.0f} s), {len(record['errors'])} cells with errors; record: {out}")
    return record


if __name__ == "__main__":
    main()
