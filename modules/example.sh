# example.sh: a template for your own Packrat modules in Bash.
#
# Copy this file to a new name in the module path (MODULE_PATH, default
# /usr/share/packrat/modules), rename "example" / "example_upload" and the
# EXAMPLE_* settings to yours, and list the names in packrat.conf:
#
#   BACKUP_MODULES=('filesystem' 'example')
#   UPLOAD_MODULES=('example_upload')
#   EXAMPLE_TARGETS=('/etc' '/srv/www')     # directories to archive
#   EXAMPLE_UPLOAD_DIR="/mnt/nas/backup"    # where example_upload copies
#
# How packrat runs a module (as the Bash original did): it sources
# packrat.conf, then every *.sh of the module path into one shell (so one
# module may call another's helper functions; where two files define the
# same function, the later file wins), then calls one function:
#
#   backup module NAME:  mod_NAME              no arguments
#   upload module NAME:  mod_NAME              upload every file in NEW_BACKUPS
#                        list_NAME             print the remote file names
#                        purge_NAME FILE       delete one remote file
#
# Each call is a fresh shell: a variable set in mod_NAME is gone when
# list_NAME runs. Code outside functions runs every time: define functions
# and nothing else.
#
# What a module can use:
#   every variable of packrat.conf (arrays stay arrays), and those of
#   modules.d/*.conf (a comma-separated INI value is an array)
#   TODAY        the run's date, YYYYMMDD (one date for the whole run, even
#                past midnight; use it in every file name: the purge goes
#                by the date in the name and never touches a name without one)
#   DOW, DOM     the run's weekday as `date +%a` prints it, day of month 01..31
#   HOSTNAME     this host's name (the config may set it)
#   OPT_VERBOSE  1 with `packrat -v`, empty otherwise
#   NEW_BACKUPS  the files of this run, space separated: a backup module
#                appends the full path of each file it made; an upload
#                module receives every new file of the run
#   verbose MSG  print MSG with -v
#   email MSG    mail MSG to ADMIN_EMAIL now; the module goes on
#   die MSG      fail: packrat reports MSG, mails it and exits 1 at the end
#   diemail MSG  the same (the original mailed here; packrat mails once)
#
# A module fails when it calls die or diemail or when its function returns
# a non-zero status; the failure is mailed once, with the run's others.
# The module's output goes to packrat's output as it is printed.
# Names with a Python port (filesystem, mysql, postgresql, local, ssh, ftp,
# s3) run the port, unless SHELL_MODULES=(name) in packrat.conf says to run
# the Bash module of that name.

# -- a backup module: example ---------------------------------------------------

# A helper; other modules may call it too. TARGET -> the archive's file name,
# in the stock modules' style: HOST-example-srv-www-YYYYMMDD.tar.gz
example_archive_name() {
    local target=${1%/}
    target=${target//\//-}
    echo "$HOSTNAME-example$target-$TODAY.tar.gz"
}

mod_example() {
    local target name tmp status
    [ ${#EXAMPLE_TARGETS[@]} -gt 0 ] || diemail "example: EXAMPLE_TARGETS is empty in packrat.conf"
    for target in "${EXAMPLE_TARGETS[@]}"; do
        if [ ! -d "$target" ]; then
            verbose "[EXAMPLE] $target does not exist, skipping"
            continue
        fi
        name=$(example_archive_name "$target")
        # Write under a temporary name and rename on success: a failed
        # backup must never leave a file under its final name.
        tmp="$BACKUP_DIR/.partial-$name"
        verbose "[EXAMPLE] backing up $target to $name"
        tar -czf "$tmp" -C / "${target#/}"
        status=$?
        # tar exits 1 when a file changed while it was read: still an archive.
        if [ $status -gt 1 ]; then
            rm -f "$tmp"
            diemail "example: tar of $target failed with status $status"
        fi
        mv -f "$tmp" "$BACKUP_DIR/$name" || diemail "example: cannot rename $tmp"
        NEW_BACKUPS="$NEW_BACKUPS $BACKUP_DIR/$name"
    done
    return 0
}

# -- an upload module: example_upload ---------------------------------------------

mod_example_upload() {
    local f name
    [ -n "$EXAMPLE_UPLOAD_DIR" ] || diemail "example_upload: EXAMPLE_UPLOAD_DIR is empty in packrat.conf"
    [ -d "$EXAMPLE_UPLOAD_DIR" ] || diemail "example_upload: $EXAMPLE_UPLOAD_DIR is not a directory"
    for f in $NEW_BACKUPS; do
        name=${f##*/}
        verbose "[EXAMPLE_UPLOAD] uploading $name"
        # Copy under a temporary name, check, then rename: the remote never
        # holds a torn file under the final name.
        cp "$f" "$EXAMPLE_UPLOAD_DIR/$name.partial" \
            && cmp -s "$f" "$EXAMPLE_UPLOAD_DIR/$name.partial" \
            && mv -f "$EXAMPLE_UPLOAD_DIR/$name.partial" "$EXAMPLE_UPLOAD_DIR/$name" \
            || { rm -f "$EXAMPLE_UPLOAD_DIR/$name.partial"; diemail "example_upload: upload of $name failed"; }
    done
    return 0
}

# Print the remote file names, one per line (words, as the original read
# them: names with spaces cannot be purged). packrat keeps only plain names
# holding a date, and purges those older than PURGE_REMOTE_ARCHIVES days.
list_example_upload() {
    [ -d "$EXAMPLE_UPLOAD_DIR" ] || die "example_upload: $EXAMPLE_UPLOAD_DIR is not a directory"
    local f
    for f in "$EXAMPLE_UPLOAD_DIR"/*; do
        [ -f "$f" ] && echo "${f##*/}"
    done
    return 0
}

# Delete one remote file; $1 is a plain file name (never a path).
purge_example_upload() {
    verbose "[EXAMPLE_UPLOAD] deleting $1"
    rm -f -- "$EXAMPLE_UPLOAD_DIR/$1" || die "example_upload: cannot delete $1"
}
