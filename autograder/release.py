"""Regenerate the students' copy: ``python -m autograder.release [assignment]`` runs
``nbgrader generate_assignment --force`` on ``source/<assignment>``, writes ``release/<assignment>``, and zips it
into ``dist/<assignment>.zip`` (not committed): the file students upload in the notebook's setup cell on Colab.
"""
from __future__ import annotations

import argparse

from autograder.course.nbgrader_commands import COURSE_ROOT, DEFAULT_ASSIGNMENT, generate_release, zip_release


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment", nargs="?", default=DEFAULT_ASSIGNMENT)
    args = parser.parse_args(argv)
    release = generate_release(args.assignment)
    archive = zip_release(release, COURSE_ROOT / "dist" / f"{args.assignment}.zip")
    print(f"released {release.relative_to(COURSE_ROOT)}; for Colab: {archive.relative_to(COURSE_ROOT)}")


if __name__ == "__main__":
    main()
