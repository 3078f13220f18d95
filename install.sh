#!/usr/bin/env bash
# Installs Packrat (Python edition) in place of the Bash original:
#   /usr/bin/packrat                 the program
#   /etc/packrat.conf                the config (only if absent: yours is kept)
#   /etc/packrat/modules.d/          per-module INI settings (MODULES_D)
#   /usr/share/packrat/modules/      Bash modules (yours are kept)
#   /usr/lib/packrat/python/         the Python package and its libraries
# and, on Debian, the system tools it runs (dar, bzip2, openssl...) via apt.
# Idempotent: run it again to upgrade.
#
# Usage: ./install.sh [--prefix DIR] [--sysconfdir DIR] [--no-apt] [--help]
# DESTDIR=/staging ./install.sh   installs under /staging, for packagers
# (no apt then; the installed files refer to PREFIX, not DESTDIR).
set -euo pipefail

PREFIX=/usr
SYSCONFDIR=/etc
APT=yes
DESTDIR="${DESTDIR:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#*=}"; shift ;;
        --sysconfdir) SYSCONFDIR="$2"; shift 2 ;;
        --sysconfdir=*) SYSCONFDIR="${1#*=}"; shift ;;
        --no-apt) APT=no; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option: $1" >&2; exit 1 ;;
    esac
done
[ -n "$DESTDIR" ] && APT=no

SRC="$(cd "$(dirname "$0")" && pwd)"
BIN="$DESTDIR$PREFIX/bin"
LIB="$PREFIX/lib/packrat/python"
SHARE="$DESTDIR$PREFIX/share/packrat/modules"
ETC="$DESTDIR$SYSCONFDIR"
say() { echo "install.sh: $*"; }

# 1. System tools (Debian). Database clients come with their servers'
#    packages; install mariadb-client / postgresql-client as you need them.
if [ "$APT" = yes ] && command -v apt-get >/dev/null 2>&1; then
    want=(python3 python3-venv dar bzip2 openssl util-linux ca-certificates)
    missing=()
    for pkg in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root to install ${missing[*]}" >&2; exit 1; }
        say "apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

PYTHON="$(command -v python3)"
PYTHON="$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')"

# 2. The Python package and its libraries, in a directory of their own
#    (Debian's Python refuses pip outside a virtual environment, PEP 668:
#    pip runs from a throwaway venv and installs with --target).
stamp="$DESTDIR$LIB/.packrat-source"
sum="$( (cat "$SRC/pyproject.toml"; find "$SRC/pypackrat" -type f \( -name '*.py' -o -name '*.ini' -o -name '*.sh' \) -print0 | sort -z | xargs -0 cat) | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum $PYTHON" ]; then
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
    "$PYTHON" -m venv "$build/venv"
    cp -r "$SRC/pyproject.toml" "$SRC/pypackrat" "$build/"
    rm -rf "$DESTDIR$LIB.new"
    say "installing the Python package into $LIB"
    "$build/venv/bin/pip" install -q --disable-pip-version-check --target "$DESTDIR$LIB.new" "$build"
    rm -rf "$DESTDIR$LIB"
    mv "$DESTDIR$LIB.new" "$DESTDIR$LIB"
    echo "$sum $PYTHON" > "$stamp"
fi

# 3. The program, where the Bash one stood (which is kept beside it once).
mkdir -p "$BIN"
if [ -f "$BIN/packrat" ] && head -c 200 "$BIN/packrat" | grep -q bash \
   && [ ! -e "$DESTDIR$PREFIX/lib/packrat/packrat.bash-original" ]; then
    cp -p "$BIN/packrat" "$DESTDIR$PREFIX/lib/packrat/packrat.bash-original"
    say "kept the Bash packrat as $PREFIX/lib/packrat/packrat.bash-original"
fi
cat > "$BIN/packrat.new" <<WRAPPER
#!$PYTHON -I
# Packrat, Python edition (installed by install.sh from $SRC).
import sys
sys.path.insert(0, "$LIB")
from pypackrat.cli import main
sys.exit(main())
WRAPPER
chmod 755 "$BIN/packrat.new"
mv "$BIN/packrat.new" "$BIN/packrat"

# 4. Config: only if absent, root-only (it may hold keys).
mkdir -p "$ETC" "$ETC/packrat/modules.d"
if [ ! -e "$ETC/packrat.conf" ]; then
    install -m 600 "$SRC/packrat.conf" "$ETC/packrat.conf"
    say "installed $SYSCONFDIR/packrat.conf"
else
    say "kept your $SYSCONFDIR/packrat.conf (the new stock file is $PREFIX/share/packrat/packrat.conf.dist)"
fi
for f in "$SRC"/modules.d/*; do
    [ -e "$f" ] || continue
    [ -e "$ETC/packrat/modules.d/$(basename "$f")" ] || install -m 644 "$f" "$ETC/packrat/modules.d/"
done

# 5. Bash modules: ours are updated, yours are never touched.
mkdir -p "$SHARE"
for f in "$SRC"/modules/*; do
    [ -f "$f" ] && install -m 644 "$f" "$SHARE/"
done
install -m 644 "$SRC/packrat.conf" "$DESTDIR$PREFIX/share/packrat/packrat.conf.dist"

say "done: $("$BIN/packrat" --version 2>/dev/null || echo "packrat installed in $BIN")"
