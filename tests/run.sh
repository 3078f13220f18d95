#!/usr/bin/env bash
# Installs what the tests need on a Debian machine (apt and pip, idempotent)
# and runs them. Usage: bash tests/run.sh [pytest arguments]
#   bash tests/run.sh -m fast   the fast tier alone: no servers, under 20 s;
#                               it installs and checks only what that tier needs
set -euo pipefail
cd "$(dirname "$0")/.."

# The fast tier is asked for by the marker expression `fast` (-m fast,
# -mfast, -m=fast); any other selection may reach a server test.
fast=""
prev=""
for arg in "$@"; do
    case "$prev$arg" in
        -mfast|-m=fast) fast=1 ;;
    esac
    if [ "$arg" = "-m" ]; then prev="-m"; else prev=""; fi
done

# What every test needs, then what only the server tier (and the real
# programs it drives) needs.
APT_PACKAGES=(
    bash coreutils util-linux procps findutils
    python3 python3-venv python3-pip
)
if [ -z "$fast" ]; then
    APT_PACKAGES+=(
        dar bzip2 lbzip2 pbzip2 zstd openssl
        openssh-server openssh-client lftp rsync
        mariadb-server mariadb-client
        postgresql postgresql-client
    )
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A virtual environment of the project's own (Debian's Python refuses
# pip outside one, PEP 668). The extra "test" holds everything, "fast" only
# pytest and pytest-subprocess (pyproject.toml); a stamp per extra records
# the pyproject.toml it was installed from.
VENV="${PACKRAT_TEST_VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
stamp="$VENV/.packrat-deps"            # the extra "test"
fast_stamp="$VENV/.packrat-deps-fast"  # the extra "fast"
current() { [ -f "$1" ] && [ "$(cat "$1")" = "$want" ]; }
if ! current "$stamp" && { [ -z "$fast" ] || ! current "$fast_stamp"; }; then
    extra="test"; target="$stamp"
    if [ -n "$fast" ]; then extra="fast"; target="$fast_stamp"; fi
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e ".[$extra]"
    echo "$want" > "$target"
fi

export PATH="$VENV/bin:$PATH:/usr/sbin:/sbin"
# The conformance suite is strict unless told otherwise: a skip that no
# capability the module lacks justifies is a failure (tests/test_upload_conformance.py).
export PACKRAT_STRICT_CONFORMANCE="${PACKRAT_STRICT_CONFORMANCE-1}"
exec "$VENV/bin/python" -m pytest "$@"
