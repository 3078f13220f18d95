"""METRICS_FILE (issue #14): real packrat runs write a Prometheus text file
that prometheus_client's parser reads, with values that agree with what
the run did; written atomically, 0644, never through a planted link; a
hostile previous file does not break the run."""
import os
import shutil
import stat
import subprocess
import tempfile
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.archives import day, touch


def parse(path):
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_agree_with_the_run(penv, tmp_path):
    src = tmp_path / "src"
    touch(src / "a.txt", os.urandom(20000))
    nas = tmp_path / "nas"
    nas.mkdir()
    metrics = tmp_path / "prom" / "packrat.prom"
    metrics.parent.mkdir()
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], UPLOAD_MODULES=["local"],
               LOCAL_DIR=str(nas), METRICS_FILE=str(metrics))
    before = time.time()
    penv.run(date=day(0), check=0)
    after = time.time()
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o644
    assert [p.name for p in metrics.parent.iterdir()] == ["packrat.prom"]  # no temporary left
    m = parse(metrics)
    start = m[("packrat_last_run_start_timestamp_seconds", ())]
    end = m[("packrat_last_run_end_timestamp_seconds", ())]
    assert before - 1 <= start <= end <= after + 1
    assert abs(m[("packrat_last_run_duration_seconds", ())] - (end - start)) < 0.01
    assert m[("packrat_last_run_exit_status", ())] == 0
    assert start <= m[("packrat_last_success_timestamp_seconds", ())] <= after + 1
    target = "testhost" + str(src).replace("/", "-")
    made = sum(p.stat().st_size for p in penv.backup_dir.iterdir())
    assert made > 0
    assert m[("packrat_backup_bytes", (("module", "filesystem"), ("target", target)))] == made
    assert m[("packrat_upload_bytes", (("module", "local"), ("target", target)))] == made
    assert m[("packrat_backup_success", (("module", "filesystem"),))] == 1
    assert m[("packrat_upload_success", (("module", "local"),))] == 1
    assert 0 <= m[("packrat_backup_duration_seconds", (("module", "filesystem"),))] <= end - start
    success = m[("packrat_last_success_timestamp_seconds", ())]

    # a failing night: the status is 1, the upload 0, the last success kept from the file
    penv.write(LOCAL_DIR=str(tmp_path / "missing"))
    penv.run(date=day(0), check=1)
    m = parse(metrics)
    assert m[("packrat_last_run_exit_status", ())] == 1
    assert m[("packrat_upload_success", (("module", "local"),))] == 0
    assert m[("packrat_last_success_timestamp_seconds", ())] == success


def test_hostile_previous_file_and_planted_link(penv, tmp_path):
    """A previous file with junk, a huge line or a fake label is no last
    success; a symbolic link planted in place of the file is replaced, its
    target untouched."""
    metrics = tmp_path / "packrat.prom"
    metrics.write_bytes(b"\xff\x00garbage\npackrat_last_success_timestamp_seconds{x=\"1\"} 5\n"
                        + b"9" * 100000 + b"\npackrat_last_success_timestamp_seconds 1e400\n")
    penv.write(METRICS_FILE=str(metrics), UPLOAD_MODULES=["local"], LOCAL_DIR=str(tmp_path / "missing"))
    touch(penv.backup_dir / ("testhost-etc-%s.1.dar" % day(0)))
    proc = penv.run("-U", day(0), date=day(0), check=1)
    assert "Traceback" not in proc.stderr
    m = parse(metrics)
    assert ("packrat_last_success_timestamp_seconds", ()) not in m
    assert m[("packrat_last_run_exit_status", ())] == 1

    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    metrics.unlink()
    metrics.symlink_to(victim)
    penv.run("-U", day(0), date=day(0), check=1)
    assert victim.read_text() == "root's file\n"
    assert not metrics.is_symlink() and parse(metrics)


def test_an_unwritable_metrics_file_is_a_warning(penv, tmp_path):
    src = tmp_path / "src"
    touch(src / "a.txt", b"x")
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)],
               METRICS_FILE=str(tmp_path / "no-such-dir" / "packrat.prom"))
    proc = penv.run(date=day(0), check=0)
    assert "METRICS_FILE=" in proc.stderr and "could not be written" in proc.stderr
    penv.write(METRICS_FILE="packrat.prom")  # cron's working directory is no place for it
    proc = penv.run(date=day(0), check=0, cwd=str(tmp_path))
    assert "METRICS_FILE=packrat.prom could not be written: not an absolute path" in proc.stderr
    assert not (tmp_path / "packrat.prom").exists()


def test_the_unprivileged_collector_can_read_it(penv):
    """node_exporter runs unprivileged: it reads the file (0644)."""
    shared = tempfile.mkdtemp(prefix="packrat-textfile-", dir="/tmp")
    try:
        os.chmod(shared, 0o755)
        metrics = os.path.join(shared, "packrat.prom")
        penv.write(METRICS_FILE=metrics, BACKUP_MODULES=[])
        penv.run(date=day(0), check=0)
        read = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                               "cat", metrics], capture_output=True, text=True)
        assert read.returncode == 0, read.stderr
        assert "packrat_last_run_exit_status 0.0" in read.stdout
    finally:
        shutil.rmtree(shared)


@pytest.mark.fast
def test_hostile_target_names_stay_labels(tmp_path):
    """A database name is hostile data: quotes, backslashes, line breaks and
    bytes that are not UTF-8 in a target stay inside its label value."""
    from pypackrat import log, monitor
    log.setup()
    hostile = 'x"} 1\npackrat_fake 9\\' + "\udcff"
    record = monitor.Record()
    with record.step("backup", "mysql") as step:
        path = tmp_path / "h-mysql-d-20261128.sql.bz2"
        path.write_bytes(b"12345")
        step.files = [str(path)]
    step.items = lambda: [(hostile, "name", 5, 0.1)]
    record.finish(0)
    text = monitor.metrics_text(record, 1700000000.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "packrat_fake" not in families
    (sample,) = families["packrat_backup_bytes"].samples
    assert sample.value == 5
    assert sample.labels["target"] == 'x"} 1\npackrat_fake 9\\\ufffd'
