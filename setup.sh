#!/usr/bin/env bash
# One command from a fresh clone: make .venv, install the course, unpack CIFAR-10, run the main job.
#   bash setup.sh                 set up, then the instructor's loop on example submissions: generate the release,
#                                 grade three examples, print the grade table (about 1 min on 2 CPU cores)
#   bash setup.sh --setup-only    set up only (what .ci/run uses)
#   bash setup.sh --workers 1     other arguments go to `python -m autograder.demo` (see --help there)
set -euo pipefail
cd "$(dirname "$0")"

run_main_job=1
if [ "${1:-}" = "--setup-only" ]; then run_main_job=0; shift; fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
echo "== installing torch 2.14.1, torchvision 0.29.1 and the course package with its extras (log: .venv/install.log)"
start=$(date +%s)
if ! .venv/bin/python -m pip install --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 -e '.[postgres,dask,test]' \
        > .venv/install.log 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" .venv/install.log | tail -n 30
    echo "setup.sh: pip install failed; the full log is .venv/install.log" >&2
    exit 1
fi
echo "   done in $(( $(date +%s) - start )) s"

# CIFAR-10: an unpacked ImageFolder copy in data/cifar10-jpeg (or wherever CIFAR10_DIR points).
archive=${CIFAR10_ARCHIVE:-../shared/data/cifar10-jpeg.tar.gz}
if [ -n "${CIFAR10_DIR:-}" ]; then
    echo "== CIFAR-10: using CIFAR10_DIR=$CIFAR10_DIR"
elif [ -d data/cifar10-jpeg/train ] && [ -d data/cifar10-jpeg/test ]; then
    echo "== CIFAR-10: data/cifar10-jpeg is already unpacked"
elif [ -f "$archive" ]; then
    echo "== CIFAR-10: unpacking $archive into data/"
    mkdir -p data
    tar -xzf "$archive" -C data
else
    echo "== CIFAR-10: no copy found (looked for data/cifar10-jpeg and $archive)."
    echo "   Offline: set CIFAR10_ARCHIVE to cifar10-jpeg.tar.gz, or CIFAR10_DIR to an unpacked copy."
    echo "   Online: load_cifar10(download=True) / --download fetches it through torchvision."
fi

if [ "$run_main_job" = 1 ]; then
    echo "== main job: python -m autograder.demo $*"
    exec .venv/bin/python -m autograder.demo "$@"
fi
