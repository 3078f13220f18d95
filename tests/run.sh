#!/usr/bin/env bash
# Installs what the tests need on a Debian machine (apt and pip, idempotent)
# and runs them. Usage: bash tests/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    bash coreutils util-linux procps findutils
    python3 python3-venv python3-pip
    dar bzip2 lbzip2 pbzip2 zstd openssl
    openssh-server openssh-client lftp
    mariadb-server mariadb-client
    postgresql postgresql-client
)
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
# pip outside one, PEP 668).
VENV="${PACKRAT_TEST_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
stamp="$VENV/.packrat-deps"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e ".[test]"
    echo "$want" > "$stamp"
fi

export PATH="$PWD/$VENV/bin:$PATH:/usr/sbin:/sbin"
exec "$VENV/bin/python" -m pytest "$@"
