"""Every setting is declared once (pypackrat/settings.py and each module's
SETTINGS), and what is made from the declarations does not drift from
them: the configspec, the shipped packrat.conf, the README's tables and
what `packrat check` prints. A module's checks read the settings through
a view that knows where each value came from; one module can reuse
another's declarations and their checks."""
import os
import re
import subprocess
import sys
import types

import pytest

from pypackrat import config, plugins, settings as declared
from pypackrat.settings import Group, Setting, View
from tests.conftest import ROOT, PackratEnv

pytestmark = pytest.mark.fast


def _is_secret(name):
    try:
        from pypackrat.core.secrets import is_secret
    except ImportError:
        from pypackrat.config import is_secret
    return is_secret(name)


def _comment_above(lines, i):
    """The comment lines right above line ``i`` (a group's title ends them)."""
    above = []
    j = i - 1
    while j >= 0 and lines[j].startswith("# ") and not lines[j].startswith("# -- "):
        above.insert(0, lines[j][2:])
        j -= 1
    return above


# -- the declarations themselves ---------------------------------------------------

def test_every_setting_is_declared_once_with_a_meaning():
    names = [s.name for s in declared.declarations()]
    assert len(names) == len(set(names))
    missing = [s.name for s in declared.declarations() if not s.meaning.strip()]
    assert not missing, "declarations without a meaning: %s" % missing
    for s in declared.declarations():
        assert "\n" not in s.meaning and s.meaning.endswith("."), s.name
    # each plugin declares its own, and the databases' shared ones are declared once
    by_group = {key: [s.name for s in group] for key, group in declared.groups()}
    assert by_group["ssh"][0] == "SSH_HOST" and all(n.startswith("SSH_") for n in by_group["ssh"])
    assert all(n.startswith("FS_") for n in by_group["filesystem"])
    assert by_group["databases"] == ["DB_CIPHER", "DB_SPLIT_ALL", "COMPRESSOR"]
    for name in plugins.available("upload"):
        assert name in by_group, "upload module %s declares no SETTINGS" % name


def test_a_name_declared_twice_is_refused():
    twice = Group("again", Setting("SSH_HOST", meaning="Again."))
    with pytest.raises(ValueError, match="SSH_HOST is declared twice"):
        declared.declarations(extra=[("again", twice)])


def test_the_secret_flag_is_the_secret_rule():
    for s in declared.declarations():
        assert s.secret == _is_secret(s.name), s.name
    assert {s.name for s in declared.declarations() if s.secret} >= {
        "ENCRYPTION_KEY", "SMTP_PASS", "MYSQL_PASS", "S3_SECRET_KEY", "SSH_KEY_PASSPHRASE"}
    with pytest.raises(ValueError, match="secret rule"):
        Setting("EXAMPLE_PASS", secret=False, meaning="A password.")
    with pytest.raises(ValueError, match="secret rule"):
        Setting("SSH_KEY", secret=True, meaning="A path.")  # a key file's path is no secret


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError):
        Setting("X_MODE", "option", "c", choices=("a", "b"), meaning="x.")
    with pytest.raises(ValueError):
        Setting("X_COUNT", "integer", meaning="x.")  # a number needs a default
    with pytest.raises(ValueError):
        Setting("X_TEXT", "text", meaning="x.")
    with pytest.raises(ValueError):
        Setting("lower", meaning="x.")


def test_importing_the_declarations_loads_no_transport_library():
    code = ("import sys\nfrom pypackrat import settings\nsettings.declarations()\n"
            "print(sorted(m for m in ('boto3', 'botocore', 'paramiko', 'ftputil') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- what is generated from them ------------------------------------------------------

def test_the_configspec_is_generated_from_the_declarations():
    assert not os.path.exists(os.path.join(ROOT, "pypackrat", "configspec.ini"))
    spec = config._spec_types()
    assert list(spec) == [s.name for s in declared.declarations()]
    for s in declared.declarations():
        assert "%s = %s" % (s.name, spec[s.name].check) == s.spec()
        assert spec[s.name].has_default == s.has_default
        assert spec[s.name].kind == s.type
        assert spec[s.name].args == list(s.choices)
    assert declared.declared("SSH_PORT").spec() == "SSH_PORT = integer(min=1, max=65535, default=22)"
    assert declared.declared("BACKUP_DIR").spec() == "BACKUP_DIR = string(min=1)"
    assert declared.declared("MYSQL_PORT").spec() == "MYSQL_PORT = integer(min=1, max=65535, default=None)"


def test_the_shipped_config_is_generated_from_the_declarations():
    with open(os.path.join(ROOT, "packrat.conf")) as fh:
        shipped = fh.read()
    assert shipped == declared.conf(), "regenerate: python -m pypackrat.settings conf > packrat.conf"
    lines = shipped.splitlines()
    for s in declared.declarations():
        set_here = [l for l in lines if re.match(r"#?%s=" % s.name, l)]
        assert len(set_here) == (0 if s.shipped is False else 1), s.name
        if set_here:
            i = lines.index(set_here[0])
            assert " ".join(_comment_above(lines, i)).startswith(s.meaning), s.name
    # the values are what the shipped file always set
    assert 'BACKUP_MODULES=(\'filesystem\')' in lines and "FS_TARGETS=('/etc')" in lines
    assert '#SSH_KEY_PASSPHRASE=""' in lines and not any(l.startswith("HOSTNAME=") for l in lines)
    # and bash reads it
    subprocess.run(["bash", "-n", os.path.join(ROOT, "packrat.conf")], check=True)


def test_the_generator_prints_the_shipped_config(capsys):
    assert declared.main(["conf"]) == 0  # python -m pypackrat.settings conf
    with open(os.path.join(ROOT, "packrat.conf")) as fh:
        assert capsys.readouterr().out == fh.read()


def test_the_readme_tables_are_generated_from_the_declarations():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    assert readme == declared.readme(readme), "regenerate: python -m pypackrat.settings readme"
    keys = declared.marked_keys(readme)
    assert sorted(keys) == sorted(key for key, group in declared.groups() if group.settings), \
        "a group without a README table (a group with no settings of its own needs none)"
    tables = "".join(re.findall(r"<!-- settings: [\w ]+ -->\n(.*?)<!-- /settings -->", readme, re.S))
    documented = re.findall(r"^\| `([A-Z0-9_]+)` \|", tables, re.M)
    assert sorted(documented) == sorted(s.name for s in declared.declarations())


def test_a_changed_meaning_shows_as_drift(monkeypatch):
    """The drift checks above can fail: a declaration changed after the
    files were generated no longer matches them."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    with open(os.path.join(ROOT, "packrat.conf")) as fh:
        shipped = fh.read()
    setting = declared.declared("SSH_BWLIMIT")
    monkeypatch.setattr(setting, "meaning", "Something else.")
    assert declared.readme(readme) != readme
    assert declared.conf() != shipped


# -- the view and the common checks -----------------------------------------------------

def _settings(origin=None, **values):
    """A config.Settings holding every declared default, plus ``values``."""
    full = {s.name: (list(s.default) if isinstance(s.default, tuple) else s.default)
            for s in declared.declarations() if s.has_default}
    full.update(ADMIN_EMAIL="root", BACKUP_DIR="/var/backup", BACKUP_MODULES=[], PURGE_LOCAL_ARCHIVES=1,
                PURGE_REMOTE_ARCHIVES=1, HOSTNAME="host")
    full.update(values)
    origin = dict(origin or {})
    for name in full:
        origin.setdefault(name, "default")
    return config.Settings(full, origin, dict(full), "/etc/packrat.conf")


def test_the_view_blames_a_default_on_the_file_that_enabled_the_module():
    s = _settings({"UPLOAD_MODULES": "/etc/packrat/modules.d/up.conf", "SSH_PORT": "/etc/packrat.conf"},
                  UPLOAD_MODULES=["ssh"])
    view = View(s, "upload", "ssh")
    assert view.where("SSH_HOST") == "/etc/packrat/modules.d/up.conf"
    assert view.where("SSH_PORT") == "/etc/packrat.conf"
    assert view.origin_of("SSH_HOST") == "default" and view.origin is s.origin
    assert View(view, "upload").settings is s  # a view of a view reads the settings
    problems = plugins.resolve(s, "ssh", "upload").check(s)
    assert problems == ["/etc/packrat/modules.d/up.conf: SSH_HOST is empty, but the ssh upload module is enabled",
                        "/etc/packrat/modules.d/up.conf: SSH_DIR is empty, but the ssh upload module is enabled"]


def test_an_upload_module_can_reuse_ssh_settings_and_checks(monkeypatch, tmp_path):
    """An rsync module built on ssh: one file, its own setting, ssh's
    declarations (and their checks) reused, nothing copied."""
    from pypackrat.upload import ssh
    rsync = types.ModuleType("pypackrat_test_rsync")
    rsync.SETTINGS = Group("rsync upload module",
                           Setting("RSYNC_OPTIONS", "string_list", meaning="More options for rsync."),
                           uses=(ssh.SETTINGS,))
    rsync.check = ssh.check
    monkeypatch.setitem(sys.modules, rsync.__name__, rsync)
    module = plugins.PythonModule("rsync", "upload", rsync.__name__)

    names = [s.name for s in declared.declarations(extra=[("rsync", rsync.SETTINGS)])]
    assert names.count("RSYNC_OPTIONS") == 1 and names.count("SSH_HOST") == 1
    assert "RSYNC_OPTIONS = string_list(default=list())" in declared.spec_lines(extra=[("rsync", rsync.SETTINGS)])
    assert [s.name for s in rsync.SETTINGS.all()][:2] == ["RSYNC_OPTIONS", "SSH_HOST"]

    enabler = str(tmp_path / "rsync.conf")
    s = _settings({"UPLOAD_MODULES": enabler}, UPLOAD_MODULES=["rsync"])
    assert module.check(s) == ["%s: SSH_HOST is empty, but the rsync upload module is enabled" % enabler,
                               "%s: SSH_DIR is empty, but the rsync upload module is enabled" % enabler]
    missing = str(tmp_path / "no-such-key")
    s = _settings({"UPLOAD_MODULES": enabler, "SSH_KEY": enabler, "SSH_KNOWN_HOSTS": enabler},
                  UPLOAD_MODULES=["rsync"], SSH_HOST="-oProxyCommand=x", SSH_DIR="/b", SSH_KEY=missing,
                  SSH_KNOWN_HOSTS=missing)
    problems = module.check(s)
    assert any(p.startswith(enabler + ": SSH_HOST='-oProxyCommand=x': must be a host name") for p in problems)
    assert "%s: SSH_KEY=%s: no such file" % (enabler, missing) in problems
    assert any(p.startswith("%s: SSH_KNOWN_HOSTS=%s: no such file" % (enabler, missing)) for p in problems)


def test_required_is_checked_only_for_an_enabled_module():
    s = _settings(UPLOAD_MODULES=[])
    assert plugins.check(s) == []
    s = _settings(BACKUP_MODULES=["mysql", "postgresql"])
    problems = plugins.check(s)
    assert problems == [
        "/etc/packrat.conf: MYSQL_TARGETS is empty, but the mysql backup module is enabled",
        "/etc/packrat.conf: POSTGRESQL_TARGETS is empty, but the postgresql backup module is enabled"]


def test_effective_lines_follow_the_declarations():
    s = _settings({"PURGE_LOCAL_ARCHIVES": "command line"}, MYSQL_PASS="pw-123", EXTRA_VAR="x")
    lines = declared.effective(s)
    names = [l.split("=", 1)[0] for l in lines if not l.startswith("#")]
    assert names == [d.name for d in declared.declarations()] + ["EXTRA_VAR"]
    assert "MYSQL_PASS=****    # the built-in default" in lines  # origin as given: none recorded
    assert "PURGE_LOCAL_ARCHIVES=1    # command line" in lines
    assert "pw-123" not in "\n".join(lines)


# -- through the real command line -----------------------------------------------------------

@pytest.fixture
def cli_env(tmp_path):
    return PackratEnv(tmp_path)  # no SMTP server: `check` sends no mail


def _listing(proc):
    return [l for l in proc.stdout.splitlines() if re.match(r"[A-Z][A-Z0-9_]*=", l)]


def test_check_prints_every_setting_in_declaration_order_with_its_meaning(cli_env):
    proc = cli_env.run("check", "--meanings", check=0)
    lines = proc.stdout.splitlines()
    listed = [l.split("=", 1)[0] for l in _listing(proc)]
    decls = declared.declarations()
    assert [n for n in listed if declared.declared(n)] == [d.name for d in decls]
    for d in decls:
        i = next(k for k, l in enumerate(lines) if l.startswith(d.name + "="))
        assert " ".join(_comment_above(lines, i)).startswith(d.meaning), d.name
    for key, group in declared.groups():
        assert "# -- %s --" % group.title in lines


def test_check_names_where_each_value_came_from(cli_env):
    cli_env.settings["FS_SLICE_SIZE"] = "500M"
    (cli_env.modules_d / "ssh.conf").write_text("[ssh]\nSSH_PORT = 2222\n")
    proc = cli_env.run("-p", "3", "check", check=0)
    lines = proc.stdout.splitlines()
    conf, md = str(cli_env.config_path), str(cli_env.modules_d / "ssh.conf")
    assert "FS_SLICE_SIZE='500M'    # %s" % conf in lines                 # the config file
    assert "SSH_PORT=2222    # %s" % md in lines                          # a modules.d file
    assert "PURGE_LOCAL_ARCHIVES=3    # command line" in lines            # the command line
    assert "FTP_PORT=21    # the built-in default" in lines              # the default
    origins = {l.split("=", 1)[0]: l.rsplit("    # ", 1)[1] for l in _listing(proc)}
    allowed = {conf, md, "command line", "the built-in default", "the kernel's host name"}
    assert set(origins.values()) <= allowed, set(origins.values()) - allowed
    assert len(origins) >= len(declared.declarations())


def test_an_error_about_a_default_blames_the_file_that_enabled_the_module(cli_env):
    conf = cli_env.modules_d / "uploads.conf"
    conf.write_text("UPLOAD_MODULES = ftp, s3\n")
    proc = cli_env.run("check", check=1)
    errors = proc.stderr.splitlines()
    for name, module in (("FTP_HOST", "ftp"), ("FTP_USER", "ftp"), ("S3_BUCKET", "s3")):
        assert "%s: %s is empty, but the %s upload module is enabled" % (conf, name, module) in errors
    assert not any(l.startswith(("default", "the built-in default")) for l in errors), errors
    conf.unlink()
    proc = cli_env.run("-u", "local", "check", check=1)
    assert "command line: LOCAL_DIR is empty, but the local upload module is enabled" in proc.stderr.splitlines()


def test_what_a_protocol_cannot_carry_is_one_declared_check():
    s = _settings({"UPLOAD_MODULES": "/etc/packrat.conf"}, UPLOAD_MODULES=["ftp"], FTP_HOST="ftp.example.org",
                  FTP_USER="u", FTP_PASS="pw-77\nQUIT", FTP_DIR="a\rb")
    problems = plugins.resolve(s, "ftp", "upload").check(s)
    assert problems == [
        "/etc/packrat.conf: FTP_PASS: holds a control character or bytes that are not UTF-8, which an FTP "
        "command cannot carry",  # a secret: its value is not shown
        "/etc/packrat.conf: FTP_DIR='a\\rb': holds a control character or bytes that are not UTF-8, which an "
        "FTP command cannot carry"]


def test_the_generator_rewrites_the_readme_tables(tmp_path):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    emptied = re.sub(r"(<!-- settings: [\w ]+ -->\n).*?(<!-- /settings -->)", r"\1\2", readme, flags=re.S)
    assert emptied != readme
    path = tmp_path / "README.md"
    path.write_text(emptied, encoding="utf-8")
    assert declared.main(["readme", str(path)]) == 0  # python -m pypackrat.settings readme
    assert path.read_text(encoding="utf-8") == readme
