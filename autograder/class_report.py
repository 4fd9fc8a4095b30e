"""``python -m autograder.class_report [GRADES_DIR]``: write the class report (``report.html`` and its PNGs) into a
folder the grade command wrote (default: ``./grades``). The grade command does this after every batch; see
``autograder/course/class_report.py`` and ``docs/class-report.md``."""
from autograder.course.class_report import main

if __name__ == "__main__":
    main()
