# Runs one function of a Bash module the way the original packrat did.
# Called by shim.py (never by hand) as:
#
#   bash shim.sh CHANNEL CONFIG SETTINGS RUNVALUES ACTION NAME -- MODULE_FILE...
#
# CHANNEL    a FIFO read by packrat; every message is "KIND\0TEXT\0":
#              die TEXT      die/diemail was called (the module's failure)
#              email TEXT    email was called (mailed by packrat right away)
#              new TEXT      NEW_BACKUPS when the shell ends (backup modules)
#              nofunc NAME   the function to run is not defined
#              purged FILE   purge_NAME FILE succeeded
#              failed FILE   purge_NAME FILE returned non-zero (the last one)
#              status N      the function returned N
# CONFIG     packrat.conf, sourced as the original did
# SETTINGS   a 0600 file of assignments: the values of modules.d/*.conf and
#            of the command line (-m, -u, -p, -r), sourced after CONFIG
# RUNVALUES  a 0600 file setting TODAY DOW DOM HOSTNAME OPT_VERBOSE
#            NEW_BACKUPS MODULE_PATH from packrat's run (one date per run),
#            and __packrat_purge, the array of file names to purge
# ACTION     mod, list or purge; NAME the module. purge calls
#            purge_NAME FILE for each name in turn, stopping at a failure
#
# Order, as in the original: the config, then every *.sh of the module path
# sourced into this one shell (modules call each other's helpers), then the
# function. The run values are set before the module files (code at the top
# of a module file may use $TODAY) and again after them.

__packrat_channel=$1
__packrat_config=$2
__packrat_settings=$3
__packrat_runvalues=$4
__packrat_action=$5
__packrat_name=$6
shift 6
[ "$1" = "--" ] && shift
__packrat_files=("$@")
set --
__packrat_pid=$BASHPID

# list_NAME's output is the listing: what the config and module files print
# while they are sourced goes to stderr instead, as it never was part of the
# original's $(list_NAME).
if [ "$__packrat_action" = list ]; then
    exec {__packrat_listing}>&1 1>&2
fi

# builtin: a printf function of the config or of a module file does not
# silence the channel
__packrat_send() {
    \builtin printf '%s\0%s\0' "$1" "$2" >>"$__packrat_channel"
}

# -- the original's functions -------------------------------------------------

# verbose MSG: print MSG on stdout when packrat runs with -v (OPT_VERBOSE=1;
# it is empty otherwise). Always returns 0, so a module ending with a
# verbose line does not fail.
verbose() {
    if [ -n "$OPT_VERBOSE" ] && [ "$OPT_VERBOSE" != 0 ]; then
        echo "$*"
    fi
    return 0
}

# die MSG: the module failed. packrat prints MSG on stderr, mails it once
# to ADMIN_EMAIL with the other failures of the run, and exits 1 at the end.
die() {
    __packrat_send die "$*"
    exit 1
}

# email MSG: mail MSG to ADMIN_EMAIL now (subject "Packrat: Error", as the
# original); backslash escapes such as \n are interpreted, as echo -e did.
# The module goes on.
email() {
    __packrat_send email "$(\builtin printf '%b' "$*")"
    return 0
}

# diemail MSG: as the original, mail MSG then die; packrat sends the one
# failure mail (MSG, then the "backup process was aborted" warning).
diemail() {
    __packrat_send die "$(\builtin printf '%b' "$*")"
    exit 1
}

# -- settings, modules, run values --------------------------------------------

# shellcheck disable=SC1090
source "$__packrat_config"
# shellcheck disable=SC1090
source "$__packrat_settings"
# shellcheck disable=SC1090
source "$__packrat_runvalues"
for __packrat_file in "${__packrat_files[@]}"; do
    # shellcheck disable=SC1090
    source "$__packrat_file"
done
unset __packrat_file
# shellcheck disable=SC1090
source "$__packrat_runvalues"

case "$__packrat_action" in
    mod)   __packrat_function=mod_$__packrat_name ;;
    list)  __packrat_function=list_$__packrat_name ;;
    purge) __packrat_function=purge_$__packrat_name ;;
    *)     echo "shim.sh: unknown action $__packrat_action" >&2; exit 2 ;;
esac
if ! \builtin declare -F "$__packrat_function" >/dev/null; then
    __packrat_send nofunc "$__packrat_function"
    exit 2
fi

if [ "$__packrat_action" = mod ]; then
    # NEW_BACKUPS as this shell leaves it, even if the module calls exit
    trap '[ "$BASHPID" = "$__packrat_pid" ] && __packrat_send new "$NEW_BACKUPS"' EXIT
    "$__packrat_function"
    __packrat_status=$?
    __packrat_send new "$NEW_BACKUPS"
elif [ "$__packrat_action" = list ]; then
    "$__packrat_function" >&"$__packrat_listing"
    __packrat_status=$?
else
    __packrat_status=0
    for __packrat_file in "${__packrat_purge[@]}"; do
        "$__packrat_function" "$__packrat_file"
        __packrat_status=$?
        if [ "$__packrat_status" -ne 0 ]; then
            __packrat_send failed "$__packrat_file"
            break
        fi
        __packrat_send purged "$__packrat_file"
    done
fi
__packrat_send status "$__packrat_status"
exit "$__packrat_status"
