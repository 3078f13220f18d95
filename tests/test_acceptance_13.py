"""Issue #13 as a maintainer and an operator try it: no action reaches into a
plugin's code, the database clients' connection is one function each (the
backup's and the restore's), and `packrat check`, through the real command
line, blames every value and every problem on the place that set it: the
config file, a modules.d file, the command line, or the built-in default,
never "default:" as the file to edit. No server: the fast tier."""
import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import PACKRAT, ROOT, write_config

pytestmark = pytest.mark.fast

CODE = os.path.join(ROOT, "pypackrat")


def _python_files(*parts):
    top = os.path.join(CODE, *parts)
    if top.endswith(".py"):
        return [top]
    return sorted(os.path.join(d, f) for d, _, files in os.walk(top) for f in files if f.endswith(".py"))


def _imports_and_calls(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module + "".join(" " + a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "import_module":
                # an action's dispatch is fine; a plugin's module named by a string is not
                yield node.lineno, "importlib.import_module(%s)" % ast.unparse(node.args[0])
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                    and func.value.id == "plugins" and func.attr == "code":
                yield node.lineno, "plugins.code(...)"


# -- no action imports a plugin's internals -------------------------------------

@pytest.mark.parametrize("part", ["actions", "catalog.py", "retention.py", "run.py", "core", "cli.py"])
def test_no_action_reaches_into_a_plugin(part):
    reached = []
    for path in _python_files(part):
        for line, what in _imports_and_calls(path):
            if re.match(r"pypackrat\.(backup|upload)\b|pypackrat (backup|upload)\b", what) \
                    or what == "plugins.code(...)" \
                    or (what.startswith("importlib.import_module(") and "actions" not in what):
                reached.append("%s:%d %s" % (os.path.relpath(path, ROOT), line, what))
    assert not reached, reached


def test_the_database_connection_is_one_function_for_backup_and_restore():
    """The restore connects as the backup does, through the same function
    of the core, not through the backup module's code."""
    from pypackrat.actions import restore
    from pypackrat.backup import mysql, postgresql
    from pypackrat.core import dbclient
    assert mysql.connection is dbclient.mysql
    assert postgresql.connection is dbclient.postgresql
    assert postgresql.dbname_arg is dbclient.dbname_arg
    assert restore.dbclient is dbclient
    for name in ("option_file", "option_value", "pgpass_lines", "_pgpass_field", "DEFAULT_SOCKET_DIRS"):
        assert getattr(dbclient, name)
        for module in (mysql, postgresql):
            if name in vars(module):
                assert vars(module)[name] is getattr(dbclient, name), (module.__name__, name)
    from pypackrat import plugins
    assert not hasattr(plugins, "code")  # the back door to a module's code is gone


def test_no_kind_branch_outside_the_shim_and_the_resolver():
    """Python and Bash modules are not told apart anywhere else."""
    branch = re.compile(r"""\bkind\s*(==|!=|in)\s*[("'\[]*(python|bash)""", re.I)
    found = []
    for path in _python_files(""):
        if os.path.basename(path) in ("shim.py", "plugins.py"):
            continue
        for number, line in enumerate(open(path), 1):
            if branch.search(line) or re.search(r"isinstance\([^)]*(BashModule|PythonModule)", line):
                found.append("%s:%d" % (os.path.relpath(path, ROOT), number))
    assert not found, found


# -- packrat check, as an operator runs it ----------------------------------------

@pytest.fixture
def site(tmp_path):
    """A config file, a modules.d, and a PATH without dar, mysqldump and scp."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("bash", "env", "cat"):
        os.symlink(shutil.which(program), bin_dir / program)
    md = tmp_path / "modules.d"
    md.mkdir(mode=0o700)
    conf = tmp_path / "packrat.conf"
    write_config(conf, {
        "ADMIN_EMAIL": "", "BACKUP_DIR": str(tmp_path / "backup"), "HOSTNAME": "testhost",
        "BACKUP_MODULES": ["filesystem", "mysql"], "PURGE_LOCAL_ARCHIVES": 10,
        "PURGE_REMOTE_ARCHIVES": 10, "MODULES_D": str(md), "MODULE_PATH": str(tmp_path),
        "LOCK_FILE": str(tmp_path / "lock"), "FS_TARGETS": [str(tmp_path)]})
    (tmp_path / "backup").mkdir(mode=0o700)
    os.chmod(conf, 0o600)

    def check(*args, status):
        env = dict(os.environ, PATH=str(bin_dir))
        proc = subprocess.run([sys.executable, PACKRAT, "-c", str(conf)] + list(args) + ["check"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    def module_file(name, text):
        path = md / name
        path.write_text(text)
        os.chmod(path, 0o600)
        return str(path)

    check.conf, check.module_file = str(conf), module_file
    return check


def _problems(proc):
    return [l for l in proc.stderr.splitlines() if l.strip()]


def _blamed_on_a_default(lines):
    return [l for l in lines if re.match(r"(Warning: |Error: )?(default|the built-in default)\b", l)]


def test_check_blames_missing_values_on_the_file_that_enabled_the_module(site):
    uploads = site.module_file("10-uploads.conf", "UPLOAD_MODULES = ssh, ftp, s3\n")
    site.module_file("50-ftp.conf", "[ftp]\nFTP_HOST = ftp.example.org\n")
    lines = _problems(site(status=1))
    assert not _blamed_on_a_default(lines), lines
    for name, module in (("SSH_HOST", "ssh"), ("SSH_DIR", "ssh"), ("FTP_USER", "ftp"), ("S3_BUCKET", "s3")):
        assert "%s: %s is empty, but the %s upload module is enabled" % (uploads, name, module) in lines
    assert "%s: MYSQL_TARGETS is empty, but the mysql backup module is enabled" % site.conf in lines
    assert not any("FTP_HOST" in l for l in lines)  # set in 50-ftp.conf
    # the same modules enabled on the command line: the command line is to blame
    lines = _problems(site("-m", "filesystem,mysql,postgresql", "-u", "ssh,ftp,s3,local", status=1))
    assert not _blamed_on_a_default(lines), lines
    for name, module, role in (("SSH_HOST", "ssh", "upload"), ("S3_BUCKET", "s3", "upload"),
                               ("LOCAL_DIR", "local", "upload"), ("POSTGRESQL_TARGETS", "postgresql", "backup")):
        assert "command line: %s is empty, but the %s %s module is enabled" % (name, module, role) in lines


def test_check_blames_a_missing_program_on_what_enabled_its_module(site):
    ssh_conf = site.module_file("60-ssh.conf", "[ssh]\nSSH_HOST = backup.example.org\nSSH_DIR = /srv\n"
                                               "SSH_CLIENT = openssh\n")
    with open(site.conf, "a") as fh:
        fh.write("MYSQL_TARGETS=(shop)\nUPLOAD_MODULES=(ssh)\n")
    lines = _problems(site(status=0))
    assert not _blamed_on_a_default(lines), lines
    assert not any("default: the filesystem module needs dar" in l for l in lines), lines
    assert ("Warning: %s: the filesystem module needs dar, which is not installed (not found in PATH): "
            "the filesystem backup will fail" % site.conf) in lines
    assert any(l.startswith("Warning: %s: the mysql module needs mysqldump" % site.conf) for l in lines), lines
    assert any(l.startswith("Warning: %s: SSH_CLIENT=openssh, but scp is not installed" % ssh_conf)
               for l in lines), lines


def test_check_lists_the_origin_of_every_value(site):
    ssh_conf = site.module_file("60-ssh.conf", "[ssh]\nSSH_HOST = backup.example.org\nSSH_DIR = /srv\n"
                                               "SSH_PORT = 2222\n")
    with open(site.conf, "a") as fh:
        fh.write("MYSQL_TARGETS=(shop)\nMYSQL_PASS='pw-of-the-acceptance-test'\n")
    proc = site("-p", "3", "-r", "4", "-m", "filesystem,mysql", "-u", "ssh", status=0)
    # enabled on the command line, a module's missing program is blamed on it
    assert ("Warning: command line: the filesystem module needs dar, which is not installed (not found in "
            "PATH): the filesystem backup will fail") in _problems(proc)
    listed = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"([A-Z][A-Z0-9_]*)=(.*?)    # (.*)$", line)
        if m:
            listed[m.group(1)] = (m.group(2), m.group(3))
    assert listed["PURGE_LOCAL_ARCHIVES"] == ("3", "command line")
    assert listed["PURGE_REMOTE_ARCHIVES"] == ("4", "command line")
    assert listed["BACKUP_MODULES"] == ("('filesystem' 'mysql')", "command line")
    assert listed["UPLOAD_MODULES"] == ("('ssh')", "command line")
    assert listed["SSH_PORT"] == ("2222", ssh_conf)
    assert listed["SSH_HOST"] == ("'backup.example.org'", ssh_conf)
    assert listed["MYSQL_TARGETS"] == ("('shop')", site.conf)
    assert listed["MYSQL_PASS"] == ("****", site.conf)
    assert listed["FTP_PORT"] == ("21", "the built-in default")
    assert listed["HOSTNAME"] == ("'testhost'", site.conf)
    allowed = {site.conf, ssh_conf, "command line", "the built-in default"}
    assert {origin for _, origin in listed.values()} <= allowed
    assert "pw-of-the-acceptance-test" not in proc.stdout + proc.stderr


# -- the one private entry point of validate that config.py uses ---------------------

def test_validate_parse_with_caching_keeps_its_shape():
    """config._spec_types() reads each configspec check with validate's
    private Validator._parse_with_caching (there is no public parser of a
    check): a validate release that renames it or changes what it returns
    fails here, not in a nightly run."""
    from validate import Validator
    from pypackrat import config, settings as declared
    parse = Validator()._parse_with_caching
    assert parse('integer(min=0, default=10)') == ("integer", [], {"min": "0"}, "10")
    assert parse('option("auto", "openssh", default="auto")') == ("option", ["auto", "openssh"], {}, "auto")
    assert parse('string_list(default=list("a", "b"))') == ("string_list", [], {}, ["a", "b"])
    assert parse('integer(min=1, max=65535, default=None)')[3] in (None, "None")
    types = config._spec_types()
    for setting in declared.declarations():
        spec = types[setting.name]
        assert spec.kind == setting.type, setting.name
        assert spec.args == list(setting.choices), setting.name
        assert spec.has_default == setting.has_default, setting.name


def test_python_and_bash_modules_offer_one_interface():
    """What resolve() returns has the same public names either way, and a
    Bash module's remote is a Lister only: no put or get it cannot do."""
    from pypackrat import plugins, shim, transfer

    def public(cls):
        return {name for name in dir(cls) if not name.startswith("_")}
    assert public(plugins.PythonModule) == public(shim.BashModule)
    assert public(shim.BashRemote) == public(transfer.Lister)
    assert not {"put", "get", "size", "rename", "checksum"} & public(shim.BashRemote)


def test_the_database_modules_share_their_listing_and_their_job():
    """What both database modules do alike is written once, in dumps.py:
    reading a server's hex listing of names, and the dump job that refuses
    a reserved name. The modules keep what differs (queries, argv)."""
    for name in ("mysql.py", "postgresql.py"):
        text = open(os.path.join(CODE, "backup", name)).read()
        assert "fromhex" not in text and "reserved(" not in text, name
        assert "dumps.list_databases(" in text and "dumps.job(" in text, name
