"""nbgrader settings for the course; the assignment lives in source/<assignment>/ and is released to release/."""
c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "simclr-cifar10"
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Executing a notebook (validate, autograde): the grading preset's longest cell takes seconds on a CPU,
# the cpu preset's training cell a few minutes; 10 minutes per cell leaves room for slow machines.
c.Execute.timeout = 600

# Files that never go to students: caches that running the notebook or its tests leaves beside it.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".hypothesis"]
