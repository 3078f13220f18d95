#!/usr/bin/env bash
# Installs Packrat (Python edition) in place of the Bash original:
#   /usr/bin/packrat                 the program
#   /etc/packrat.conf                the config (only if absent: yours is kept)
#   /etc/packrat/modules.d/          per-module INI settings (MODULES_D)
#   /usr/share/packrat/modules/      Bash modules (yours are kept)
#   /usr/lib/packrat/python/         the Python package and its libraries
#   /usr/share/man/man8/packrat.8, man5/packrat.conf.5   the man pages
#   /usr/lib/systemd/system/packrat.service, packrat.timer   the nightly run,
#   /etc/systemd/system/packrat.service.d/50-paths.conf      with the paths
#                                    it writes (from the config's BACKUP_DIR...)
# and, on Debian, the system tools it runs (dar, bzip2, openssl...) via apt.
# Idempotent: run it again to upgrade.
#
# The timer is enabled on a fresh install; not where a cron line already runs
# packrat (it says how to switch), nor with --no-timer, nor on an upgrade
# whose timer was installed before (enabled or not, as you left it).
#
# Usage: ./install.sh [--prefix DIR] [--sysconfdir DIR] [--localstatedir DIR]
#                     [--no-apt] [--no-timer] [--help]
# DESTDIR=/staging ./install.sh   installs under /staging, for packagers
# (no apt then; the installed files refer to PREFIX, not DESTDIR).
set -euo pipefail

PREFIX=/usr
SYSCONFDIR=/etc
LOCALSTATEDIR=/var
APT=yes
TIMER=yes
DESTDIR="${DESTDIR:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#*=}"; shift ;;
        --sysconfdir) SYSCONFDIR="$2"; shift 2 ;;
        --sysconfdir=*) SYSCONFDIR="${1#*=}"; shift ;;
        --localstatedir) LOCALSTATEDIR="$2"; shift 2 ;;
        --localstatedir=*) LOCALSTATEDIR="${1#*=}"; shift ;;
        --no-apt) APT=no; shift ;;
        --no-timer) TIMER=no; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# 6. The man pages, generated from the flags (cli.py) and the settings'
#    declarations of the package just installed.
packrat_py() {  # packrat_py MODULE ARGS...: MODULE.main(ARGS) of the installed package
    "$PYTHON" -I -c 'import importlib, sys; lib, mod = sys.argv[1:3]; del sys.argv[1:3]; sys.path.insert(0, lib); sys.exit(importlib.import_module(mod).main(sys.argv[1:]))' "$DESTDIR$LIB" "$@"
}
MAN="$DESTDIR$PREFIX/share/man"
mkdir -p "$MAN/man8" "$MAN/man5"
packrat_py pypackrat.manpages packrat.8 > "$MAN/man8/packrat.8.new"
packrat_py pypackrat.manpages packrat.conf.5 > "$MAN/man5/packrat.conf.5.new"
chmod 644 "$MAN/man8/packrat.8.new" "$MAN/man5/packrat.conf.5.new"
mv "$MAN/man8/packrat.8.new" "$MAN/man8/packrat.8"
mv "$MAN/man5/packrat.conf.5.new" "$MAN/man5/packrat.conf.5"

# 7. systemd: the service and its daily timer. The service writes only the
#    directories of the drop-in (made from the config) and /run/packrat.
UNITS="$DESTDIR$PREFIX/lib/systemd/system"
DROPIN="$ETC/systemd/system/packrat.service.d"
WANTS="$ETC/systemd/system/timers.target.wants"
first_units=no
[ -e "$UNITS/packrat.timer" ] || first_units=yes
mkdir -p "$UNITS" "$DROPIN"
sed "s#^ExecStart=/usr/bin/packrat\$#ExecStart=$PREFIX/bin/packrat#" "$SRC/systemd/packrat.service" > "$UNITS/packrat.service.new"
cp "$SRC/systemd/packrat.timer" "$UNITS/packrat.timer.new"
chmod 644 "$UNITS/packrat.service.new" "$UNITS/packrat.timer.new"
mv "$UNITS/packrat.service.new" "$UNITS/packrat.service"
mv "$UNITS/packrat.timer.new" "$UNITS/packrat.timer"
if packrat_py pypackrat.units dropin "$ETC/packrat.conf" > "$DROPIN/50-paths.conf.new"; then
    chmod 644 "$DROPIN/50-paths.conf.new"
    mv "$DROPIN/50-paths.conf.new" "$DROPIN/50-paths.conf"
else
    rm -f "$DROPIN/50-paths.conf.new"
    say "could not read $SYSCONFDIR/packrat.conf (above): packrat.service can write /run/packrat only;"
    say "  fix the config and run install.sh again, or add ReadWritePaths=BACKUP_DIR in $SYSCONFDIR/systemd/system/packrat.service.d/"
fi

# A cron line that runs packrat (the Bash install's way): the timer would
# make a second nightly run, so it is left to the operator.
cron_lines() {
    local f
    for f in "$ETC/crontab" "$ETC"/cron.d/* "$DESTDIR$LOCALSTATEDIR/spool/cron/crontabs/root"; do
        [ -f "$f" ] || continue
        grep -HnE '^[[:space:]]*[^#[:space:]].*(^|[[:space:]/])packrat([[:space:];|&<>]|$)' "$f" 2>/dev/null || true
    done
}
systemd_runs=no
if [ -z "$DESTDIR" ] && [ "$SYSCONFDIR" = /etc ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemd_runs=yes
    systemctl daemon-reload
fi
cron="$(cron_lines)"
if [ -n "$cron" ]; then
    say "packrat.timer is installed but NOT enabled: cron already runs packrat:"
    printf '%s\n' "$cron" | sed 's/^/install.sh:   /'
    say "to switch from cron to the timer: delete that line (crontab -e, or the file above), then"
    say "  systemctl enable --now packrat.timer    (see: systemctl list-timers packrat.timer)"
elif [ "$TIMER" = no ]; then
    say "packrat.timer is installed, not enabled (--no-timer): systemctl enable --now packrat.timer"
elif [ "$first_units" = no ]; then
    say "packrat.timer was installed before: left enabled or disabled as it was"
elif [ "$systemd_runs" = yes ]; then
    systemctl enable --now packrat.timer
    say "enabled packrat.timer (daily, at a random time within an hour after midnight)"
else
    mkdir -p "$WANTS"
    ln -sfn "$PREFIX/lib/systemd/system/packrat.timer" "$WANTS/packrat.timer"
    say "enabled packrat.timer (linked in $SYSCONFDIR/systemd/system/timers.target.wants; systemd is not running here, it starts at the next boot)"
fi

say "done: $("$BIN/packrat" --version 2>/dev/null || echo "packrat installed in $BIN")"
