"""The instructor's loop on example submissions: ``python -m autograder.demo`` (the main job of setup.sh).

It regenerates ``release/`` from ``source/`` with nbgrader, makes a scratch course folder (``demo/`` by
default) holding three example submissions (the solutions, the untouched release, train_epoch without
``zero_grad``), grades them with ``python -m autograder.grade --feedback`` and prints the grade table. The real
thing is the same command on your course root: ``python -m autograder.grade [SUBMISSIONS]``, then, once the written
answers are hand-graded, again with ``--feedback``.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from autograder.course.examples import example_submissions
from autograder.grade import grade, print_table
from autograder.course.nbgrader_commands import COURSE_ROOT, generate_release


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=COURSE_ROOT / "demo", help="scratch course folder (replaced)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    start = time.monotonic()
    print("== nbgrader generate_assignment: source/simclr -> release/simclr", flush=True)
    generate_release()
    root = args.root.resolve()
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(COURSE_ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(COURSE_ROOT / "nbgrader_config.py", root)
    incoming = root / "incoming"
    incoming.mkdir()
    for name, text in example_submissions().items():
        (incoming / f"{name}.ipynb").write_text(text)
    print(f"== grading {len(list(incoming.glob('*.ipynb')))} example submissions in {root}", flush=True)
    rows = grade(incoming, root=root, workers=args.workers, feedback=True)
    print()
    print_table(rows)
    print(f"\ndone in {time.monotonic() - start:.0f} s: grades in {root / 'grades'}, feedback in {root / 'feedback'}")


if __name__ == "__main__":
    main()
