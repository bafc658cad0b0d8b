#!/usr/bin/env bash
# Install what postveil's tests and demo need, then create .venv with postveil in it.
# Safe to run again: it installs only what is missing and says what it does.
#
# System packages: Postfix (installed but not configured, so no system instance
# starts), libmilter-dev (pymilter builds against it), GnuPG, OpenSSL, swaks,
# redis-server (the shared-cache tests start their own), util-linux (unshare).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
PACKAGES=(postfix libmilter-dev gnupg openssl swaks redis-server util-linux ca-certificates)

say() { printf 'bootstrap: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
fi
# pip compiles pymilter and postveil's C module, which need a C compiler and
# Python.h. A host can have gcc (from build-essential) without python3-dev.
if ! command -v cc >/dev/null 2>&1; then
    missing+=(gcc)
fi
if ! "$PYTHON" -c 'import os, sysconfig, sys
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    missing+=(python3-dev)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    say "installing system packages: ${missing[*]}"
    # "No configuration" installs Postfix without a main.cf, so no system
    # instance is configured or started; the tests run private instances.
    echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    say "system packages already installed: ${PACKAGES[*]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.postveil-installed"
# The editable install builds the C module once; a changed source, or a module
# missing from the tree, needs a new build.
module_source=src/postveil/detection/_wordscan.c
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
    || [ "$module_source" -nt "$stamp" ] || ! compgen -G "${module_source%.c}*.so" >/dev/null; then
    say "installing postveil and its test dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    if [ "${POSTVEIL_SKIP_CLASSIFIER:-0}" = 1 ]; then
        "$VENV/bin/python" -m pip install -q -e '.[test]'
    else
        # postveil-classifierd's model runs on PyTorch. Given a version range, pip
        # would take a CUDA build of several GB. 2.13.0 is a CPU build on the hosts
        # this project is tested on; docs/classifier.md explains how to pick one elsewhere.
        say "installing PyTorch ${POSTVEIL_TORCH:-torch==2.13.0} for the classifier (POSTVEIL_SKIP_CLASSIFIER=1 skips it)"
        "$VENV/bin/python" -m pip install -q "${POSTVEIL_TORCH:-torch==2.13.0}"
        "$VENV/bin/python" -m pip install -q -e '.[test,classifier]'
    fi
    touch "$stamp"
else
    say "$VENV is up to date with pyproject.toml and the C module"
fi
say "done: run 'make test' or 'make demo'"
