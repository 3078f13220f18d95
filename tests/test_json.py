"""--json of packrat list, verify and check (issue #14): through the real
command line, with real dar archives and the local upload module; every
document validated against the declared fields (pypackrat/report_schema.py),
which the README's tables must match."""
import bz2
import json
import os
import re

import pytest

from pypackrat import report_schema
from tests.archives import HOST, WEEK, flip_byte, mirror_to_local, week_dar_name
from tests.archives import plain_week, use  # noqa: F401
from tests.conftest import ROOT

SECRET = "pa55-w0rd.secret"
# a file name that is not UTF-8 and holds an escape sequence and a quote
HOSTILE = b"%s-mysql-sh\xff\x1b[31m\"op-%s.sql.bz2" % (HOST.encode(), WEEK[-1].encode())


def document(proc, action, status):
    """stdout as one JSON document of ``action``, valid against its schema."""
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    doc = json.loads(proc.stdout)  # the whole of stdout: nothing else on it
    assert report_schema.problems(doc) == [], report_schema.problems(doc)
    assert doc["version"] == 1 and doc["action"] == action and doc["exit_status"] == status
    assert proc.stdout.isascii()
    return doc


def run(penv, *args, **kw):
    """packrat, its stdout read as bytes (surrogate escapes preserved)."""
    proc = penv.run(*args, encoding="utf-8", errors="surrogateescape", **kw)
    return proc


@pytest.fixture
def shared(penv, plain_week, tmp_path):
    """The week's chain, a dump, the hostile name and a file named with the
    secret, all also on a 'local' remote."""
    src, _ = use(penv, plain_week)
    penv.settings["MYSQL_PASS"] = SECRET
    dump = penv.backup_dir / ("%s-mysql-shop-%s.sql.bz2" % (HOST, WEEK[-1]))
    dump.write_bytes(bz2.compress(b"CREATE TABLE t (i int);\n"))
    with open(os.path.join(os.fsencode(penv.backup_dir), HOSTILE), "wb") as fh:
        fh.write(bz2.compress(b"--\n"))
    named = "%s-mysql-%s-%s.sql.bz2" % (HOST, SECRET, WEEK[0])
    (penv.backup_dir / named).write_bytes(bz2.compress(b"--\n"))
    return src, mirror_to_local(penv, tmp_path / "share")


def test_list_json(penv, shared):
    src, share = shared
    proc = run(penv, "-v", "list", "--json")
    doc = document(proc, "list", 0)
    assert doc["host"] == HOST and doc["backup_dir"] == str(penv.backup_dir)
    assert [(loc["name"], loc["kind"], loc["error"]) for loc in doc["locations"]] == [
        ("BACKUP_DIR", "local", None), ("local", "remote", None)]
    archives = doc["archives"]
    assert [(a["day"], a["kind"], a["slices"]) for a in archives] == [(WEEK[0], "master", 3)] + [
        (d, "incremental", s) for d, s in zip(WEEK[1:], [1, 1, 1, 2, 2, 2])]
    master = archives[0]
    assert master["target"] == src and master["master"] is None and master["missing_slices"] == []
    total = sum(os.path.getsize(penv.backup_dir / week_dar_name(src, WEEK[0], i)) for i in (1, 2, 3))
    assert master["size"] == total
    assert master["locations"] == [{"name": "BACKUP_DIR", "slices": 3, "size": total},
                                   {"name": "local", "slices": 3, "size": total}]
    assert {a["master"] for a in archives[1:]} == {master["name"]}
    # the hostile name is data: the same str Python gets from the directory
    names = [d["name"] for d in doc["dumps"]]
    assert os.fsdecode(HOSTILE) in names
    hostile = doc["dumps"][names.index(os.fsdecode(HOSTILE))]
    assert hostile["database"] == os.fsdecode(b"sh\xff\x1b[31m\"op") and hostile["engine"] == "mysql"
    assert "\\u001b[31m" in proc.stdout and "\\udcff" in proc.stdout and "\x1b" not in proc.stdout
    # the secret in a file name is masked, the progress lines went to stderr
    assert SECRET not in proc.stdout
    assert any("****" in n for n in names)
    assert doc["problems"] == []


def test_list_json_problems_and_unreadable_remote(penv, shared, tmp_path):
    src, share = shared
    os.unlink(share / week_dar_name(src, WEEK[3]))
    os.unlink(penv.backup_dir / week_dar_name(src, WEEK[0], 2))
    os.unlink(share / week_dar_name(src, WEEK[0], 2))
    doc = document(run(penv, "list", "--json"), "list", 0)
    master = doc["archives"][0]
    assert master["missing_slices"] == [2] and master["size"] is None
    assert any(p.startswith(week_dar_name(src, WEEK[3]) + ": only in BACKUP_DIR") for p in doc["problems"])
    assert any("slice 2 missing everywhere" in p for p in doc["problems"])
    penv.settings["LOCAL_DIR"] = str(tmp_path / "not-mounted")
    doc = document(run(penv, "list", "--json"), "list", 1)
    assert doc["locations"][1]["error"] and "cannot connect" in doc["problems"][0]
    assert all(loc["name"] == "BACKUP_DIR" for a in doc["archives"] for loc in a["locations"])
    doc = document(run(penv, "verify", "--json", "-d", WEEK[1]), "verify", 1)
    assert doc["results"][0]["kind"] == "location" and doc["results"][0]["name"] == "local"
    assert "cannot connect" in doc["results"][0]["message"]


def test_verify_json_good_and_bad(penv, shared, smtp):
    src, share = shared
    proc = run(penv, "-v", "verify", "--json")
    doc = document(proc, "verify", 0)
    assert doc["status"] == "ok" and doc["day"] == WEEK[-1] and doc["failures"] == []
    # the master and the last incremental tested; the dumps decoded; 5 slices + 2 dumps compared
    assert doc["checked"] == {"archives": 2, "dumps": 2, "copies": 7}
    tested = [(r["kind"], r["name"], r["location"], r["status"]) for r in doc["results"]
              if r["kind"] == "archive"]
    prefix = week_dar_name(src, WEEK[0]).rsplit(".", 3)[0].rsplit("-", 1)[0]
    assert tested == [("archive", "%s-%s.master" % (prefix, WEEK[0]), "BACKUP_DIR", "ok"),
                      ("archive", "%s-%s" % (prefix, WEEK[-1]), "BACKUP_DIR", "ok")]
    assert ("copy", os.fsdecode(HOSTILE), "local", "ok") in [
        (r["kind"], r["name"], r["location"], r["status"]) for r in doc["results"]]
    assert "[VERIFY]" not in proc.stdout and "[VERIFY]" in proc.stderr
    assert penv.mails() == []

    victim = week_dar_name(src, WEEK[0], 2)
    flip_byte(penv.backup_dir / victim)
    proc = run(penv, "verify", "--json")
    doc = document(proc, "verify", 1)
    assert doc["status"] == "failed" and doc["failures"]
    bad = [r for r in doc["results"] if r["status"] == "failed"]
    assert {(r["kind"], r["name"]) for r in bad} >= {("archive", "%s-%s.master" % (prefix, WEEK[0])),
                                                    ("copy", victim)}
    assert all(r["message"] for r in bad)
    assert victim in proc.stderr  # the plain lines on stderr, and the mail, as without --json
    assert len(penv.mails()) == 1


def test_a_bash_upload_module(penv, plain_week, tmp_path):
    """A Bash upload module lists without sizes (null) and its own output
    (it may print) never reaches the JSON on stdout."""
    import shutil
    src, _ = use(penv, plain_week)
    shutil.copy(os.path.join(ROOT, "modules", "example.sh"), penv.module_path / "example.sh")
    nas = tmp_path / "nas"
    shutil.copytree(penv.backup_dir, nas)
    penv.settings.update(UPLOAD_MODULES=["example_upload"], EXAMPLE_UPLOAD_DIR=str(nas))
    doc = document(run(penv, "-v", "list", "--json"), "list", 0)
    master = doc["archives"][0]
    assert master["locations"][1] == {"name": "example_upload", "slices": 3, "size": None}
    assert master["size"] == master["locations"][0]["size"] > 0
    doc = document(run(penv, "-v", "verify", "--json"), "verify", 0)
    assert doc["checked"] == {"archives": 2, "dumps": 0, "copies": 5}


def test_verify_json_nothing_and_bad_date(penv):
    doc = document(run(penv, "verify", "--json"), "verify", 1)
    assert doc["day"] is None and doc["results"][0]["kind"] == "run"
    assert "nothing to verify" in doc["failures"][0]
    doc = document(run(penv, "verify", "--json", "-d", "2024"), "verify", 1)
    assert doc["results"] == [{"kind": "run", "name": None, "location": None, "status": "failed",
                               "message": "a date is written YYYYMMDD, not '2024'"}]


def test_check_json_masks_secrets(penv):
    penv.settings.update(MYSQL_PASS=SECRET, ENCRYPTION_KEY=SECRET + "-key",
                         PING_URL="https://hc.example.org/ping/0123-uuid")
    penv.extra = 'COPY_OF_IT="x${ENCRYPTION_KEY}x"\nMYSQL_PSS="%s"\n' % SECRET
    proc = run(penv, "check", "--json")
    doc = document(proc, "check", 0)
    assert doc["valid"] is True and doc["problems"] == [] and doc["config"] == str(penv.config_path)
    settings = {s["name"]: s for s in doc["settings"]}
    for name in ("MYSQL_PASS", "ENCRYPTION_KEY", "PING_URL", "MYSQL_PSS"):
        assert settings[name]["value"] == "****" and settings[name]["secret"] is True, name
    assert settings["COPY_OF_IT"]["value"] == "x****x" and settings["COPY_OF_IT"]["declared"] is False
    assert settings["PURGE_LOCAL_ARCHIVES"]["value"] == 10
    assert settings["PURGE_LOCAL_ARCHIVES"]["origin"] == str(penv.config_path)
    assert settings["SMTP_TLS"]["origin"] == "the built-in default"
    assert settings["ADMIN_EMAIL"]["meaning"] and settings["ADMIN_EMAIL"]["group"] == "Global settings"
    for text in (SECRET, "0123-uuid"):
        assert text not in proc.stdout and text not in proc.stderr
    assert any("MYSQL_PSS" in w for w in doc["warnings"])  # a typo of a setting's name
    assert "MYSQL_PSS" in proc.stderr
    # BACKUP_DIR open to others: a warning in the document and on stderr
    os.chmod(penv.backup_dir, 0o755)
    proc = run(penv, "check", "--json")
    doc = document(proc, "check", 0)
    assert any("BACKUP_DIR" in w and "chmod 700" in w for w in doc["warnings"])


def test_check_json_invalid_config(penv):
    penv.settings.update(PURGE_LOCAL_ARCHIVES="ten", MYSQL_PASS=SECRET)
    (penv.modules_d / "s3.ini").write_text("S3_PORT = x\n")
    penv.settings["UPLOAD_MODULES"] = ["s3"]
    plain = run(penv, "check")
    proc = run(penv, "check", "--json")
    doc = document(proc, "check", 1)
    assert plain.returncode == 1 and plain.stdout == ""
    assert proc.stderr == plain.stderr  # the plain lines unchanged, on stderr
    assert doc["valid"] is False and doc["settings"] == [] and doc["modules"] == []
    problems = {p["setting"]: p for p in doc["problems"]}
    assert problems["PURGE_LOCAL_ARCHIVES"]["file"] == str(penv.config_path)
    assert "'ten'" in problems["PURGE_LOCAL_ARCHIVES"]["message"]
    assert [p["message"] for p in doc["problems"]] == plain.stderr.splitlines()[-len(doc["problems"]):]
    assert SECRET not in proc.stdout
    # a configuration file that cannot be read at all
    proc = run(penv, "-c", str(penv.tmp / "missing.conf"), "check", "--json")
    doc = document(proc, "check", 1)
    assert doc["problems"][0]["file"] == str(penv.tmp / "missing.conf")


# -- the schema itself, and the README ------------------------------------------------

@pytest.mark.fast
def test_readme_tables_are_the_schema():
    """README's tables are generated from report_schema (python -m
    pypackrat.report_schema readme README.md): they drift, this fails."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    assert report_schema.marked(text) == ["list", "verify", "check"]
    assert report_schema.readme(text) == text, "run: python -m pypackrat.report_schema readme README.md"
    for action, schema in report_schema.SCHEMAS.items():
        for name, _, meaning in report_schema.rows(schema):
            assert re.search(r"\| `%s` \|" % re.escape(name), text), name
            assert meaning


@pytest.mark.fast
def test_the_validator_fails_what_is_wrong():
    good = {"version": 1, "action": "check", "exit_status": 1, "config": "/etc/packrat.conf",
            "valid": False, "problems": [{"setting": None, "file": None, "message": "m"}],
            "warnings": [], "modules": [], "settings": []}
    assert report_schema.problems(good) == []
    cases = [("valid", "no", "not a boolean"), ("exit_status", True, "not a integer"),
             ("action", "purge", "not one of"), ("problems", [{"setting": None, "file": None}], "missing"),
             ("extra", 1, "not a documented field"), ("settings", [{"name": "X"}], "missing")]
    for key, value, message in cases:
        bad = dict(good, **{key: value})
        found = report_schema.problems(bad, report_schema.CHECK)
        assert any(message in p for p in found), (key, found)
    del good["warnings"]
    assert report_schema.problems(good) == ["$.warnings: missing"]


@pytest.mark.fast
def test_emit_never_fails_on_names():
    """Any str a name can be (a lone surrogate of a byte that is not UTF-8,
    control characters) is written as ASCII JSON that reads back the same."""
    names = ["a\udcff\x1b\x00b", "\u00e9t\u00e9", "\"quoted\\", "line\nbreak"]
    text = report_schema.dumps({"names": names})
    assert text.isascii() and json.loads(text)["names"] == names
