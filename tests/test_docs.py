"""The documents cannot drift from the code: every command, flag, path, name, setting and link they name exists.

From ``README.md`` and ``docs/*.md`` this extracts every ``python -m MODULE ...`` (in code blocks and inline code),
every ``bash X.sh ...``, every backticked repository path, ``--flag``, ``c.Section.key`` setting and
``autograder.``/``reference.``/``bench.``/``simclr_helpers.`` name, and every relative link with its anchor. One
helper process imports torch once and forks a child per module for ``python -m MODULE --help``; a documented flag
must appear in that help. The last test feeds the same checks a synthetic page that names a missing one of each.
"""
from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

# What the course makes when it runs may be named before it exists: every path .gitignore ignores (grades/,
# submitted/, exchange/, dist/, gradebook.db, ...), and these, which it does not: the CIFAR-10 folder (a link in
# some checkouts) and the calibration records (committed once measured).
GENERATED = ("data/", "autograder/calibration/", "calibration/")
# Files outside this repository that the documents name: JupyterHub's configuration, the ImageFolder layout of
# the CIFAR-10 copy, students' notebooks in an example.
EXTERNAL = ("jupyterhub_config.py", "train/<class>/*.jpg", "test/<class>/*.jpg", "victim.ipynb", "victim_.ipynb")
# A bare file name (no folder) is checked when it is code the repository must hold; a bare data or output name
# (`grades.csv`, `report.html`) is what a command writes, wherever it is told to.
CODE_SUFFIXES = (".py", ".ipynb", ".sh", ".toml", ".j2")
# Flags of other programs that the documents quote alone: bubblewrap's, `dask worker`'s.
OTHER_PROGRAMS_FLAGS = frozenset({"--die-with-parent", "--nthreads", "--nworkers", "--resources", "--help"})
# Configuration sections the course reads as plain settings (no traitlets class): where their fields are defined.
SETTINGS_SECTIONS = {"TrainingRun": ("autograder.checks.training_run", "TrainingRunSettings")}
# Configuration of other programs that the documents quote: JupyterHub's.
OTHER_PROGRAMS_SECTIONS = frozenset({"Spawner"})
# A flag of a measurement's command that the tool has dropped since; the record it produced stays quoted.
RETIRED_FLAGS = frozenset({("bench.grading", "--isolate")})

PACKAGES = ("autograder", "reference", "bench", "simclr_helpers")


@dataclass(frozen=True)
class Command:
    """``python -m MODULE ARGS`` as a document writes it."""
    doc: str
    module: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Names:
    """Everything one document names that must exist."""
    commands: tuple[Command, ...]
    scripts: tuple[tuple[str, str, tuple[str, ...]], ...]   # (doc, script, its flags)
    paths: tuple[tuple[str, str], ...]                      # (doc, path as written)
    dotted: tuple[tuple[str, str], ...]                     # (doc, autograder.x.y)
    links: tuple[tuple[str, str], ...]                      # (doc, target as written)
    loose_flags: tuple[tuple[str, str], ...]                # (doc, `--flag` quoted alone in the text)
    settings: tuple[tuple[str, str], ...]                   # (doc, Section.key of a `c.Section.key` setting)
    anchors: frozenset[str]                                 # the anchors its headings make


def split_markdown(text: str) -> tuple[list[str], list[str], str]:
    """The fenced code blocks (continuation lines joined), the inline code spans, and the text outside blocks."""
    blocks, prose, inside, current = [], [], False, []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if inside:
                blocks.append(re.sub(r"\\\n\s*", " ", "\n".join(current)))
                current = []
            inside = not inside
        elif inside:
            current.append(line)
        else:
            prose.append(line)
    prose_text = "\n".join(prose)
    spans = [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", prose_text)]
    return blocks, spans, prose_text


def _flags(arguments: str) -> tuple[str, ...]:
    return tuple(re.findall(r"(?<![\w-])(--[a-zA-Z][\w-]*)", arguments))


def _commands(doc: str, line: str) -> list[Command]:
    found = []
    for match in re.finditer(r"(?:^|[\s/])python3?\s+-m\s+([A-Za-z_][\w.]*)([^#|;&]*)", line):
        found.append(Command(doc, match.group(1), _flags(match.group(2))))
    return found


def _looks_like_path(span: str) -> bool:
    """A file or folder of the repository as written (``<name>`` placeholders, ``*`` and an optional ``[part]``
    allowed): not a command, an absolute path, a URL, an expression, or a path under a placeholder root."""
    if not re.fullmatch(r"[\w.][\w.\-*/\[\]]*", re.sub(r"<[\w .\-]+>", "x", span)) or span.startswith("<"):
        return False
    if "/" not in span:
        return span.endswith(CODE_SUFFIXES)
    return True


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def extract(doc: str, text: str) -> Names:
    """What ``text`` (the document ``doc``, relative to the repository) names."""
    blocks, spans, prose = split_markdown(text)
    commands, scripts, paths, dotted, loose_flags, settings = [], [], [], [], [], []
    for block in blocks:
        for line in block.splitlines():
            commands += _commands(doc, line.split(" #")[0])
            for match in re.finditer(r"(?:^|\s)bash\s+(\S+\.sh)([^#]*)", line):
                scripts.append((doc, match.group(1), _flags(match.group(2))))
    for span in spans:
        commands += _commands(doc, span)
        if match := re.match(r"bash\s+(\S+\.sh)(.*)$", span):
            scripts.append((doc, match.group(1), _flags(match.group(2))))
        elif match := re.match(r"c\.(\w+\.\w+)(?:$|\s*=)", span):
            if match.group(1).split(".")[0] not in OTHER_PROGRAMS_SECTIONS:
                settings.append((doc, match.group(1)))
        elif match := re.match(r"(--[a-zA-Z][\w-]*)(?:$|[ =])", span):
            loose_flags.append((doc, match.group(1)))
        elif re.fullmatch(rf"(?:{'|'.join(PACKAGES)})(?:\.\w+)+", span):
            dotted.append((doc, span))
        elif _looks_like_path(span):
            paths.append((doc, span))
    links = [(doc, target) for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]+`", "", prose))
             if not re.match(r"[a-z]+:", target)]
    anchors = frozenset(slug(h) for h in re.findall(r"^#+\s+(.*)$", prose, flags=re.M))
    return Names(commands=tuple(commands), scripts=tuple(scripts), paths=tuple(paths), dotted=tuple(dotted),
                 links=tuple(links), loose_flags=tuple(loose_flags), settings=tuple(settings), anchors=anchors)


@lru_cache(maxsize=1)
def repository_names() -> frozenset[str]:
    """The repository's files as git knows them (tracked, or new and not ignored), and their folders."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        files = [line for line in out.splitlines() if (ROOT / line).exists()]
    except (OSError, subprocess.CalledProcessError):   # not a git checkout: the files on disk, tools' folders aside
        skip = {".git", ".venv", "data", "__pycache__", ".hypothesis", ".pytest_cache"}
        files = [f.relative_to(ROOT).as_posix() for f in ROOT.rglob("*")
                 if f.is_file() and not skip & set(f.relative_to(ROOT).parts)]
    return frozenset(files) | {p.as_posix() for f in files for p in Path(f).parents if p != Path(".")}


def _expand(path: str) -> list[str]:
    """``<name>`` and ``*`` as wildcards; ``[-dask]`` as an optional part: the globs a written path stands for."""
    path = re.sub(r"<[^>]*>", "*", path).rstrip("/")
    options = re.match(r"(.*)\[([^\]]*)\](.*)", path)
    return [options.group(1) + options.group(3), options.group(1) + options.group(2) + options.group(3)] \
        if options else [path]


@lru_cache(maxsize=None)
def ignored_by_git(path: str) -> bool:
    """Whether .gitignore ignores ``path`` (a placeholder standing for any name)."""
    try:
        done = subprocess.run(["git", "check-ignore", "-q", "--no-index", re.sub(r"<[^>]*>", "x", path)], cwd=ROOT,
                              capture_output=True)
    except OSError:
        return False
    return done.returncode == 0


def path_exists(path: str) -> bool:
    """A written path names a file or folder of the repository (relative to its root, or the tail of one), or one
    the course generates."""
    if path.startswith(GENERATED) or path in EXTERNAL or path.startswith("../"):
        return True
    names = repository_names()
    for pattern in _expand(path):
        if pattern in names or any(fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*/" + pattern)
                                   for name in names):
            return True
    return ignored_by_git(path)


def missing_paths(names: Names) -> list[str]:
    return [f"{doc}: `{path}` is no file or folder of the repository"
            for doc, path in names.paths if not path_exists(path)]


def missing_links(names: Names, anchors_of: dict[str, frozenset[str]]) -> list[str]:
    """Relative links whose file, or whose #anchor, is not there."""
    problems = []
    for doc, target in names.links:
        file, _, anchor = target.partition("#")
        if not file:
            if anchor not in anchors_of[doc]:
                problems.append(f"{doc}: the link ({target}) names no heading of {doc}")
            continue
        resolved = (ROOT / doc).parent / file
        relative = resolved.resolve().relative_to(ROOT.resolve()).as_posix()
        if not resolved.exists():
            problems.append(f"{doc}: the link ({target}) leads to no file")
        elif anchor and anchor not in (anchors_of.get(relative) if relative in anchors_of
                                       else extract(relative, resolved.read_text()).anchors):
            problems.append(f"{doc}: the link ({target}) names no heading of {relative}")
    return problems


def missing_scripts(names: Names) -> list[str]:
    problems = []
    for doc, script, flags in names.scripts:
        file = ROOT / script
        if not file.is_file():
            problems.append(f"{doc}: `bash {script}` names no script")
            continue
        problems += [f"{doc}: `bash {script} {flag}`: the script has no {flag}"
                     for flag in flags if flag not in file.read_text()]
    return problems


def probe(modules: list[str], dotted: list[str], settings: list[str]) -> dict:
    """Run in a fresh interpreter (``python tests/test_docs.py IN OUT``): find every module, then fork one child per
    module that runs it as ``python -m MODULE --help`` does (torch imported once, before); resolve every dotted
    name; find every ``Section.key`` setting among the configurable traits of the course's and nbgrader's
    classes, or the fields of the course's plain settings."""
    import importlib
    import importlib.util
    import os
    import runpy
    import signal
    import tempfile
    import traceback

    sys.path[:0] = [str(ROOT), str(ROOT / "source" / "simclr")]
    for shared in ("torch", "torchvision", "nbgrader.apps"):   # imported once here, not in every child
        try:
            importlib.import_module(shared)
        except ImportError:
            pass
    result: dict = {"modules": {}, "dotted": {}, "settings": {}}
    for module in modules:
        entry = result["modules"][module] = {"error": None, "code": None, "help": ""}
        try:
            if importlib.util.find_spec(module) is None:
                entry["error"] = "no such module"
                continue
        except Exception as error:   # the report names it; the other modules are still probed
            entry["error"] = f"its package does not import: {error!r}"
            continue
        with tempfile.TemporaryFile() as output:
            pid = os.fork()
            if pid == 0:
                os.dup2(output.fileno(), 1)
                os.dup2(output.fileno(), 2)
                sys.argv = [module, "--help"]
                code = 0
                try:
                    runpy.run_module(module, run_name="__main__", alter_sys=True)
                except SystemExit as done:
                    code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
                except BaseException:
                    traceback.print_exc()
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
            signal.alarm(120)
            _, status = os.waitpid(pid, 0)
            signal.alarm(0)
            output.seek(0)
            entry["help"] = output.read().decode(errors="replace")
            entry["code"] = os.waitstatus_to_exitcode(status)
    for name in dotted:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                target = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        else:
            result["dotted"][name] = "its package does not import"
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
            result["dotted"][name] = None
        except AttributeError:
            result["dotted"][name] = f"{'.'.join(parts[:cut])} has no {'.'.join(parts[cut:])}"
    if settings:
        import dataclasses

        from traitlets.config import Configurable
        # the course's classes that nbgrader_config.py names (the preprocessors), and nbgrader's
        # and the documented commands' own (a command's Configurable, e.g. a service's settings)
        config_file = (ROOT / "nbgrader_config.py").read_text()
        named = re.findall(r"[\"'](autograder(?:\.\w+)+)\.\w+[\"']", config_file)
        ours = [m for m in modules if m.split(".")[0] in PACKAGES and not result["modules"][m]["error"]]
        for package in (*named, *ours, "nbgrader.apps", "nbgrader.preprocessors", "nbgrader.exchange"):
            try:
                importlib.import_module(package)
            except Exception:   # a command that does not import is reported with its --help
                pass
        classes, stack = {}, [Configurable]
        while stack:
            for sub in stack.pop().__subclasses__():
                classes.setdefault(sub.__name__, []).append(sub)
                stack.append(sub)
        for setting in settings:
            section, key = setting.split(".")
            if section in SETTINGS_SECTIONS:
                module, name = SETTINGS_SECTIONS[section]
                try:
                    known = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
                except (ImportError, AttributeError) as error:
                    result["settings"][setting] = f"{module}.{name}, where {section}'s fields are, is gone: {error}"
                    continue
            else:
                known = {trait for cls in classes.get(section, []) for trait in cls.class_traits(config=True)}
            result["settings"][setting] = None if key in known else (
                f"no configurable class {section}" if not known else f"{section} has no setting {key}")
    return result


def run_probe(modules: list[str], dotted: list[str], settings: list[str], tmp_path: Path) -> dict:
    request, answer = tmp_path / "probe-in.json", tmp_path / "probe-out.json"
    request.write_text(json.dumps({"modules": modules, "dotted": dotted, "settings": settings}))
    done = subprocess.run([sys.executable, __file__, str(request), str(answer)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"the probe failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(answer.read_text())


def command_problems(commands: list[Command], dotted: list[tuple[str, str]], probed: dict) -> list[str]:
    problems = []
    for command in commands:
        entry = probed["modules"][command.module]
        where = f"{command.doc}: `python -m {command.module}`"
        if entry["error"]:
            problems.append(f"{where}: {entry['error']}")
        elif entry["code"] != 0 or "usage" not in entry["help"].lower():
            problems.append(f"{where} --help exits {entry['code']} and prints:\n{entry['help'][-2000:]}")
        else:
            problems += [f"{command.doc}: `python -m {command.module} {flag}`: --help lists no {flag}"
                         for flag in command.flags
                         if (command.module, flag) not in RETIRED_FLAGS
                         and not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", entry["help"])]
    problems += [f"{doc}: `{name}`: {probed['dotted'][name]}" for doc, name in dotted if probed["dotted"][name]]
    return problems


def loose_flag_problems(loose_flags: list[tuple[str, str]], probed: dict) -> list[str]:
    """A flag quoted alone must be one of a documented command's (its --help), of setup.sh, or another program's."""
    known = "\n".join(entry["help"] for entry in probed["modules"].values()) + (ROOT / "setup.sh").read_text()
    return [f"{doc}: `{flag}` is a flag of no documented command" for doc, flag in loose_flags
            if flag not in OTHER_PROGRAMS_FLAGS and not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", known)]


def check(texts: dict[str, str], probed: dict) -> list[str]:
    """Every problem of the documents ``{path relative to the repository: text}``; ``probed``: ``run_probe``'s
    answer for (at least) their modules and dotted names."""
    extracted = {doc: extract(doc, text) for doc, text in texts.items()}
    anchors = {doc: names.anchors for doc, names in extracted.items()}
    problems, commands, dotted, loose_flags, settings = [], [], [], [], []
    for names in extracted.values():
        problems += missing_paths(names) + missing_links(names, anchors) + missing_scripts(names)
        commands += names.commands
        dotted += names.dotted
        loose_flags += names.loose_flags
        settings += names.settings
    problems += [f"{doc}: `c.{setting}`: {probed['settings'][setting]}" for doc, setting in settings
                 if probed["settings"][setting]]
    return problems + command_problems(commands, dotted, probed) + loose_flag_problems(loose_flags, probed)


def the_documents() -> dict[str, str]:
    return {doc.relative_to(ROOT).as_posix(): doc.read_text() for doc in DOCS}


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict:
    """One probe for the documents and the synthetic page: torch is imported once."""
    names = [extract(doc, text) for doc, text in {**the_documents(), "docs/synthetic.md": SYNTHETIC}.items()]
    return run_probe(sorted({c.module for n in names for c in n.commands}),
                     sorted({name for n in names for _, name in n.dotted}),
                     sorted({setting for n in names for _, setting in n.settings}), tmp_path_factory.mktemp("probe"))


def test_the_documents_name_only_what_exists(probed):
    texts = the_documents()
    names = [extract(doc, text) for doc, text in texts.items()]
    modules = {c.module for n in names for c in n.commands}
    # The extraction finds what the documents are about (an empty extraction would pass vacuously).
    assert {"autograder.grade", "autograder.release", "autograder.demo", "bench.run", "pytest"} <= modules
    assert sum(len(n.paths) for n in names) > 100 and sum(len(n.links) for n in names) > 10
    problems = check(texts, probed)
    assert not problems, "the documents name what is not there:\n" + "\n".join(problems)


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 10_500, f"README.md is {len(readme.encode())} bytes: move detail to docs/"
    # CI runs the README's test command (.ci/run); the set-up commands stay as they are.
    assert ".venv/bin/python -m pytest   # the test suite (what CI runs, through .ci/run)" in readme
    assert "bash setup.sh                # " in readme and "`bash setup.sh --setup-only`" in readme
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)", readme))
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= linked, "a document the README does not link"


def test_each_document_says_whom_it_is_for():
    for doc in (ROOT / "docs").glob("*.md"):
        first = [p for p in doc.read_text().split("\n\n") if p.strip()]
        assert first[0].startswith("# "), f"{doc.name} opens without a title"
        assert re.search(r"\bfor\b", first[1][:300], re.I), f"{doc.name}: its first paragraph says whom it is for"


SYNTHETIC = """# A page

```bash
python -m autograder.no_such_command --workers 2
python -m autograder.grade --no-such-flag
bash no_such_script.sh
bash setup.sh --no-such-option
```

See `autograder/no_such_module.py`, `bench/records/<name>.json`, `grades/<student>.json`, `gone_file.py`,
`no_such_folder/report.html`, `demo/grades/`, `grades.csv`, `<c.Exchange.root>/<course_id>/inbound`,
`autograder.grade.no_such_function`, `--no-such-switch`, `--workers 2`, `c.TrustedChecks.no_such_limit`,
`c.TrainingRun.no_such_budget = 1`, `c.NoSuchApp.timeout`, `c.TrustedChecks.memory_mb`, [a page](no_such_page.md), [a heading](../README.md#no-such-heading)
and [here](#a-page).
"""


def test_a_missing_module_flag_script_path_name_or_link_is_reported(probed):
    problems = "\n".join(check({"docs/synthetic.md": SYNTHETIC}, probed))
    for expected in ("`python -m autograder.no_such_command`: no such module",
                     "`python -m autograder.grade --no-such-flag`: --help lists no --no-such-flag",
                     "`bash no_such_script.sh` names no script", "the script has no --no-such-option",
                     "`autograder/no_such_module.py` is no file", "`gone_file.py` is no file",
                     "`no_such_folder/report.html` is no file",
                     "`autograder.grade.no_such_function`: autograder.grade has no no_such_function",
                     "(no_such_page.md) leads to no file", "`c.TrustedChecks.no_such_limit`: TrustedChecks has no",
                     "`c.TrainingRun.no_such_budget`: TrainingRun has no", "`c.NoSuchApp.timeout`: no configurable",
                     "`--no-such-switch` is a flag of no documented command", "(../README.md#no-such-heading) names no heading"):
        assert expected in problems, f"not reported: {expected}\n{problems}"
    # A placeholder that matches committed files, a generated folder and an anchor of the page itself pass.
    for fine in ("bench/records/<name>.json", "grades/<student>.json", "(#a-page)", "`--workers`", "memory_mb",
                 "demo/grades/", "grades.csv", "inbound"):
        assert fine not in problems


if __name__ == "__main__":
    asked = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(probe(asked["modules"], asked["dotted"], asked["settings"])))
