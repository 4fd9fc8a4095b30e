"""nbgrader settings for the course; the assignment lives in source/<assignment>/ and is released to release/."""
import os

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

# The course root is this file's folder, as an absolute path (a relative one makes every nbgrader command warn
# "root '.' is not absolute").
COURSE_ROOT = os.path.dirname(os.path.abspath(__file__))  # noqa: F821 (__file__: set by traitlets' loader)
c.CourseDirectory.course_id = "simclr-cifar10"
c.CourseDirectory.root = COURSE_ROOT
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"

# The exchange: the folder the formgrader's Release and Collect buttons (nbgrader release_assignment / collect) and
# the students' Assignment List (fetch, submit) share. On one machine it is exchange/ in the course root, made here;
# on a JupyterHub every user's server must see the same folder, writable by all (nbgrader's default
# /usr/local/share/nbgrader/exchange, or a shared volume): set NBGRADER_EXCHANGE to it in the instructor's
# environment, and c.Exchange.root in the students' nbgrader config (docs/instructors-guide.md, "The exchange").
# Without one that exists, the formgrader warns "The exchange directory ... does not exist" and its Release and
# Collect buttons do nothing.
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE") or os.path.join(COURSE_ROOT, "exchange")
if not os.environ.get("NBGRADER_EXCHANGE") and not os.path.isdir(c.Exchange.root):
    try:
        os.makedirs(c.Exchange.root, exist_ok=True)
        os.chmod(c.Exchange.root, 0o777)   # what nbgrader release_assignment sets (and warns about otherwise)
    except OSError:   # a read-only course folder: grading works, the formgrader warns about the exchange
        pass

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Executing a notebook (nbgrader validate; autograde does not execute, see below): the grading preset's longest
# cell takes seconds on a CPU, the cpu preset's training cell a few minutes; 10 minutes per cell leaves room.
c.Execute.timeout = 600

# nbconvert checks the whole notebook against nbformat's schema after every preprocessor (a dozen times per student
# in autograde); once, after the last, is enough: every submission was read and validated before grading, and an
# invalid result still stops that student (the log then names the last preprocessor, not the one at fault).
c.Exporter.optimistic_validation = True

# Files that never go to students: caches that running the notebook or its tests leaves beside it.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".hypothesis"]

# Autograding runs no kernel: autograder.nbgrader_ext.plugin.TrustedChecks takes Execute's place, grades every test
# cell with the checks on a separate process and removes the hidden tests from the autograded copy (and so from
# the feedback). KeepManualGrades is nbgrader's SaveAutoGrades, except that a regrade leaves hand-graded cells graded
# (nbgrader's marks them all "needs manual grade" again; here only an answer that changed since is). The other
# preprocessors are nbgrader's defaults.
c.Autograde.autograde_preprocessors = [
    "autograder.nbgrader_ext.plugin.TrustedChecks",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "autograder.nbgrader_ext.plugin.KeepManualGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Sanitising a submission: nbgrader's defaults, except that ClearOutput becomes KeepPlainOutputs, which keeps the
# printed text and PNG figures of the cells that are not graded (the exercise tables the hand-graded answers cite),
# and, last, SanitizeCells: markdown and raw cells lose what could run in the formgrader's page or the feedback
# (script, event handlers, javascript: links, SVG attachments...; autograder/nbgrader_ext/sanitize.py says what stays).
c.Autograde.sanitize_preprocessors = [
    "autograder.nbgrader_ext.plugin.KeepPlainOutputs",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
    "autograder.nbgrader_ext.sanitize.SanitizeCells",
]
# Per check: a hanging function loses that check only. CPU seconds of the check's processes where the sandbox's
# cgroup counts them (a busy machine does not shorten them), with a wall-clock backstop overload_factor times
# longer: a check past it that was mostly waiting for a CPU makes the row "not graded ... grade again", never a 0.
c.TrustedChecks.check_timeout_s = 60
c.TrustedChecks.overload_factor = 5
c.TrustedChecks.memory_mb = 4096           # data-segment limit of the student process
c.TrustedChecks.boot_timeout_s = 300      # the student process's own start-up (importing torch): not the student's time
# Student code runs in the grading sandbox (bubblewrap: new PID, network, user namespaces, no host files; each check
# in namespaces of its own). "none" turns it off for trusted code only, and warns on every run; the grade command's
# --unsafe-no-sandbox does the same.
c.TrustedChecks.sandbox = "bwrap"
c.TrustedChecks.scratch_mb = 256          # each student process's /tmp/home and /dev/shm
# Where a cgroup can be made: all of one submission's processes together (memory_mb + zygote_mb of memory).
c.TrustedChecks.max_processes = 128
c.TrustedChecks.zygote_mb = 2048
# Only the answer cells' definitions run (a saving of grading time: no verdict depends on it).
c.TrustedChecks.definitions_only = True
# Test cells the student deleted come back from the gradebook instead of being skipped.
c.OverwriteCells.add_missing_cells = True
# nbgrader zeroes a test cell with any stderr output; should autograde ever execute notebooks again (Execute in
# place of TrustedChecks), library warnings and progress bars on stderr are dropped first.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"Warning|\d+it/s|s/it\]"

# The graded training run (autograder/checks/training_run.py): the student's components train ResNet-18 for a fixed budget
# on a GPU and the grader probes the encoder. The pass mark is not calibrated yet (it must be measured on the
# grading GPU); until it is, and on machines without CUDA, the cell's points follow the checks of the components.
c.TrainingRun.preset = "gpu"
c.TrainingRun.overrides = {"epochs": 5}
c.TrainingRun.device = "cuda"
c.TrainingRun.min_probe_accuracy = None
c.TrainingRun.without_device = "follow_checks"   # or "zero", or "run_anyway"

# The grading service (python -m autograder.serve; docs/grading-service.md): grades each submission as it reaches
# the exchange. Off by default: release the feedback of the autograded part as soon as it is graded (the written
# answers show 0 points until hand-graded; grade --feedback and nbgrader release_feedback replace it later).
c.AutoGrading.release_feedback = False
c.AutoGrading.rescan_s = 30               # full rescans of the inbound folder, besides watchdog's events (NFS has none)
c.AutoGrading.max_submission_mb = 100     # larger submissions are skipped (logged)
# Grade an entry only if its Unix owner is the student it names: for hubs where each student has a Unix account.
c.AutoGrading.require_owner = False
