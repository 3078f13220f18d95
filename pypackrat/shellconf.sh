exec 3>"$2"
# Evaluates packrat.conf exactly as Bash does and prints every variable it
# defines, NUL-separated: "S" NAME VALUE for a scalar, "A" NAME COUNT VALUE...
# for an array. Called by config.py as: bash shellconf.sh CONFIG_FILE
__packrat_before=" $(compgen -v | tr '\n' ' ') "
source "$1"
__packrat_status=$?
for __packrat_name in $(compgen -v); do
    case "$__packrat_name" in __packrat_*) continue ;; esac
    if [ "$__packrat_name" != HOSTNAME ] && [[ "$__packrat_before" == *" $__packrat_name "* ]]; then
        continue
    fi
    __packrat_decl=$(declare -p "$__packrat_name" 2>/dev/null) || continue
    declare -n __packrat_ref="$__packrat_name"
    case "$__packrat_decl" in
        "declare -a"*|"declare -A"*)
            printf 'A\0%s\0%s\0' "$__packrat_name" "${#__packrat_ref[@]}" >&3
            [ "${#__packrat_ref[@]}" -gt 0 ] && printf '%s\0' "${__packrat_ref[@]}" >&3
            ;;
        *)
            printf 'S\0%s\0%s\0' "$__packrat_name" "$__packrat_ref" >&3
            ;;
    esac
    unset -n __packrat_ref
done
exit "$__packrat_status"
