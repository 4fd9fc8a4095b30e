"""nbgrader's commands run in the grading process, as ``python -m nbgrader COMMAND ...`` runs them in a new one.

A batch's ``nbgrader autograde`` and ``generate_feedback`` were two new processes, each paying the start-up of
Python, nbgrader and (autograde, for the course's ``TrustedChecks``) torch: seconds the grading process has already
paid. Here the same command line goes to nbgrader's own ``NbGraderApp`` (as nbgrader's tests run it), in the course
root, with what it writes to stdout and stderr captured and nbgrader's state reset afterwards; the result is the
``CompletedProcess`` the new process gave. The course config, the preprocessors, the gradebook's writes and the
log's form are nbgrader's, unchanged.

While a command runs, nbgrader's ``Gradebook`` gets one SQLAlchemy engine per database URL instead of a new one each
time it is opened (a dozen times per student), so SQL compiled for the first student serves the rest.
``run_nbgrader_at_once`` runs several commands (each for its own students) in processes forked from this one.
"""
from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import subprocess
import sys
import threading
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def _in_course(root: Path) -> Iterator[None]:
    """The working folder and ``sys.path`` of ``nbgrader`` started in ``root`` (its config is read from there),
    put back afterwards."""
    cwd, path = os.getcwd(), list(sys.path)
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = path


@contextlib.contextmanager
def _shared_engines() -> Iterator[None]:
    """Every ``nbgrader.api.Gradebook`` opened meanwhile with one URL uses the same engine (its ``close`` only
    empties the engine's connection pool; the compiled-SQL cache stays)."""
    import nbgrader.api
    create_engine = nbgrader.api.create_engine
    engines: dict = {}

    def shared(url, **options):
        key = (str(url), tuple(sorted(options.items())))
        if key not in engines:
            engines[key] = create_engine(url, **options)
        return engines[key]

    nbgrader.api.create_engine = shared
    try:
        yield
    finally:
        nbgrader.api.create_engine = create_engine
        for engine in engines.values():
            engine.dispose()


def _exit_status(code) -> int:
    """A ``SystemExit`` code as a process's exit status (a message, like ``sys.exit("...")``, is 1)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def run_nbgrader(args: list[str], course_root: Path) -> subprocess.CompletedProcess:
    """``nbgrader ARGS`` (``release.nbgrader``'s command) run in this process; its stdout, stderr (nbgrader's log)
    and exit status as a ``CompletedProcess``. In a process that is itself a Jupyter application (a kernel, where
    ``grade`` may be called), whose singleton nbgrader's would displace, it runs in a new process as before."""
    from jupyter_core.application import NoStart
    from nbgrader.apps import NbGraderApp
    from traitlets.config import Application
    from autograder.course.nbgrader_commands import nbgrader
    if Application.initialized():
        return nbgrader(args, course_root)
    argv = [*args, f"--CourseDirectory.root={course_root}"]
    out, err = io.StringIO(), io.StringIO()
    with _in_course(course_root), _shared_engines(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        app = NbGraderApp.instance()   # made here, so that its log handler writes to ``err``
        try:
            app.initialize(argv)
            app.start()
            status = 0
        except NoStart:   # what a Jupyter app raises once its subcommand has run (its launch catches it)
            status = 0
        except SystemExit as exit_:
            status = _exit_status(exit_.code)
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
        except Exception:  # noqa: BLE001 - what an uncaught error does to the process: a traceback, status 1
            traceback.print_exc()
            status = 1
        finally:
            app.reset()
    return subprocess.CompletedProcess([sys.executable, "-m", "nbgrader", *argv], status, out.getvalue(),
                                       err.getvalue())


def run_nbgrader_at_once(commands: list[list[str]], course_root: Path) -> subprocess.CompletedProcess:
    """``run_nbgrader`` of each command (each for its own students), all at the same time in processes forked from
    this one (nbgrader and the course's code already imported), or one after the other here while this process
    runs other threads (a Dask client's: a fork copies none of them, nor what they hold); their outputs joined in
    order, and the worst exit status."""
    if len(commands) > 1 and threading.active_count() == 1:
        sys.stdout.flush()
        sys.stderr.flush()
        with ProcessPoolExecutor(len(commands), mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(run_nbgrader, command, course_root) for command in commands]
            results = [_outcome(future, command) for future, command in zip(futures, commands)]
    else:
        results = [run_nbgrader(command, course_root) for command in commands]
    if len(results) == 1:
        return results[0]
    return subprocess.CompletedProcess([r.args for r in results], max(r.returncode for r in results),
                                       "".join(r.stdout for r in results), "".join(r.stderr for r in results))


def _outcome(future: Future, command: list[str]) -> subprocess.CompletedProcess:
    """What a forked process's command gave, or, if a process died (killed, out of memory), status 1 and that."""
    try:
        return future.result()
    except BrokenProcessPool as error:
        return subprocess.CompletedProcess(command, 1, "", f"a process running nbgrader {command[0]} for some of "
                                           f"the students died ({error}); their files may be missing\n")
