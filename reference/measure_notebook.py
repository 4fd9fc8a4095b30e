"""Execute the lab notebook headless under one preset and record how long it took and what it reached.

    python -m reference.measure_notebook --preset cpu      # writes reference/measurements/notebook_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
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


def execute(preset: str, notebook: Path = NOTEBOOK, timeout: int = 1800) -> tuple[nbformat.NotebookNode, float]:
    """Run every cell of ``notebook`` under ``preset`` in a fresh kernel; return it executed and the seconds taken."""
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(REPORT_CELL))
    os.environ["SIMCLR_PRESET"] = preset
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(notebook.parent)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


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
    nb, seconds = execute(args.preset)
    if args.executed:
        nbformat.write(nb, args.executed)
    report = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    results = json.loads(report.split("RESULTS ", 1)[1]) if "RESULTS " in report else {}
    record = dict(preset=args.preset, notebook_seconds=round(seconds, 1), errors=errors(nb), **results,
                  versions=dict(python=platform.python_version(), torch=torch.__version__,
                                cpu_count=os.cpu_count(), machine=platform.machine()))
    out = args.out or MEASUREMENTS / f"notebook_{args.preset}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{args.preset}: {seconds:.0f} s, {len(record['errors'])} cells with errors; record: {out}")
    return record


if __name__ == "__main__":
    main()
