# Evaluates packrat.conf exactly as Bash does and writes every variable it
# defines to a result file. Called by config.py (never by hand) as:
#
#   bash shellconf.sh CONFIG_FILE RESULT_FILE
#
# RESULT_FILE is opened only after the config has been sourced, so nothing
# the config prints or writes (to any descriptor) can reach it. Its records
# are NUL-separated:
#   S NAME VALUE               a scalar
#   A NAME COUNT VALUE...      an array (the values of an associative one)
#   E STATUS LINE              the config was read to its end; STATUS is the
#                              status of `source` (its last command)
#   X STATUS LINE              the config exited before its end (exit, set -e);
#                              the variables before it are what it had defined
#   R STATUS LINE              a `return` outside any function stopped reading
#                              the config there (source returned early)
# LINE is the line of the config's last command when known (empty if not).
# No record at all: the shell was replaced (exec) or killed.
#
# The code after `source` must not depend on anything the config may have
# changed: it runs in POSIX mode (special builtins such as unset, set, trap,
# exec win over functions of the same name), removes the functions that
# shadow the builtins it uses, resets shell options and traps, and reads the
# variables in one pass without a subshell, so 10,000 variables take about
# a second and no fork.
{
readonly __packrat_config="$1" __packrat_result="$2"
set --
__packrat_line= __packrat_prev= __packrat_returned=

__packrat_names() {
    # every variable name, into __packrat_all: one listing (bash lists all
    # variables in time quadratic in their number: list them once), through
    # the result file, so no subshell
    \builtin compgen -v >|"$__packrat_result"
    \builtin mapfile -t __packrat_all <"$__packrat_result"
}

__packrat_sane() {
    # Undo what the config may have done to the shell, before any command
    # that is not a special builtin runs.
    POSIXLY_CORRECT=y
    \unset -f builtin command printf declare local shopt enable compgen mapfile
    \builtin enable builtin command printf declare local shopt enable compgen mapfile 2>/dev/null
    \builtin unalias -a
    \trap - DEBUG ERR RETURN
    \set +euvxnCETf +o pipefail
    \builtin shopt -u nocasematch extdebug 2>/dev/null
    IFS=$' \t\n'
}

__packrat_on_exit() {
    # The EXIT trap: only an early exit writes here (after the dump,
    # __packrat_done is set).
    __packrat_status=$1 __packrat_last=$__packrat_prev
    __packrat_sane
    [[ -n $__packrat_done ]] && return
    __packrat_values X
}

__packrat_dump() {
    __packrat_status=$1 __packrat_last=$__packrat_line
    __packrat_sane
    if [[ -n $__packrat_returned ]]; then
        __packrat_last=$__packrat_returned
        __packrat_values R
    else
        __packrat_values E
    fi
}

__packrat_values() {
    # every variable the config defined, then the record of the end ($1)
    __packrat_done=1
    \exec >|"$__packrat_result" </dev/null
    __packrat_names
    for __packrat_name in "${__packrat_all[@]}"; do
        case "$__packrat_name" in __packrat_*|POSIXLY_CORRECT) continue ;; esac
        if [[ $__packrat_name != HOSTNAME && $__packrat_before == *" $__packrat_name "* ]]; then
            continue
        fi
        case "${!__packrat_name@a}" in
            *[aA]*)
                __packrat_ref="$__packrat_name[@]"
                __packrat_vals=("${!__packrat_ref}")
                \builtin printf 'A\0%s\0%s\0' "$__packrat_name" "${#__packrat_vals[@]}"
                [[ ${#__packrat_vals[@]} -gt 0 ]] && \builtin printf '%s\0' "${__packrat_vals[@]}"
                ;;
            *)
                \builtin printf 'S\0%s\0%s\0' "$__packrat_name" "${!__packrat_name}"
                ;;
        esac
    done
    \builtin printf '%s\0%s\0%s\0' "$1" "$__packrat_status" "$__packrat_last"
}

readonly -f __packrat_names __packrat_sane __packrat_on_exit __packrat_dump __packrat_values
__packrat_names
readonly __packrat_before=" ${__packrat_all[*]} "
unset __packrat_all

# The line of the config's last command, for "exited early at line N"
# (functrace: the DEBUG trap also runs in the sourced file). The trap keeps
# the previous line too, as the EXIT trap's own command runs it once more.
set -T
# A `return` at the file's top level (not in a function of it) ends the
# `source` early: the trap notes its line.
trap '[[ ${BASH_SOURCE[0]} == "$__packrat_config" ]] && __packrat_prev=$__packrat_line __packrat_line=$LINENO && [[ ${FUNCNAME[0]-source} == source && ( $BASH_COMMAND == return || $BASH_COMMAND == "return "* ) ]] && __packrat_returned=$LINENO; :' DEBUG
trap '__packrat_on_exit "$?"' EXIT
# shellcheck disable=SC1090
source "$__packrat_config"
__packrat_dump "$?"
exit 0
}
