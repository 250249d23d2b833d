"""Batch systems: their queues' answers read into states, on outputs recorded from each
system's documentation; failing or unknown status commands say UNKNOWN, never GONE."""

from __future__ import annotations

import os
import stat
import textwrap
import time
from pathlib import Path

import pytest

from kale_ext import config
from kale_ext.clusters import ClusterRecord, batch, is_stale
from kale_ext.clusters._base import KINDS
from kale_ext.clusters._dask_jobs import job_script
from kale_ext.clusters._ipp_launchers import ENGINE_LAUNCHERS, launcher_traits
from kale_ext.clusters.batch import GONE, UNKNOWN, JobState
from tests.conftest import run_python

DATA = Path(__file__).parent / "data"


def _parse(kind: str, ids: list[str], rc: int, stdout: str = "", stderr: str = ""):
    if stdout.endswith(".txt"):
        stdout = (DATA / stdout).read_text()
    return batch.system(kind).parse_status(ids, rc, stdout, stderr)


def test_kinds_are_local_and_the_registered_systems():
    assert set(batch.names()) >= {"slurm", "pbs", "sge", "lsf"}
    assert ("local", *batch.names()) == KINDS
    for name in batch.names():
        system = batch.system(name)
        assert system.name == name and system.directive_prefix.startswith("#")
        assert ENGINE_LAUNCHERS[name] is system.engine_launcher
    assert list(ENGINE_LAUNCHERS) == list(KINDS)


# -- Slurm ------------------------------------------------------------------------------

def test_slurm_squeue_states_and_reasons():
    states = _parse("slurm", [str(i) for i in range(101, 108)], 0, "squeue.txt")
    assert states == {
        "101": JobState("RUNNING", "vm"), "102": JobState("PENDING", "(Resources)"),
        "103": JobState("PENDING", "(PartitionTimeLimit)"),
        "104": JobState("COMPLETING", "vm"), "105": JobState("CANCELLED", ""),
        "106": JobState("TIMEOUT", ""),
        "107": JobState(GONE),  # not listed although --states=all: purged by slurmctld
    }
    slurm = batch.system("slurm")
    assert [j for j, s in states.items() if slurm.is_ended(s)] == ["105", "106", "107"]
    assert [j for j, s in states.items() if slurm.is_ending(s)] == ["104"]
    assert [j for j, s in states.items() if slurm.is_hopeless(s)] == ["103"]


def test_slurm_invalid_ids_are_gone_and_other_errors_unknown():
    assert _parse("slurm", ["7", "8"], 1, stderr="slurm_load_jobs error: Invalid job id "
                  "specified\n") == {"7": JobState(GONE), "8": JobState(GONE)}
    assert _parse("slurm", ["7"], 1, stderr="slurm_load_jobs error: Unable to contact slurm "
                  "controller (connect failure)\n") == {}


# -- PBS --------------------------------------------------------------------------------

@pytest.mark.parametrize("recorded, state, reason", [
    ("pbs_qstat_f_queued.txt", "Q",
     "Not Running: Insufficient amount of resource: ncpus (R: 4 A: 2 T: 2)"),
    ("pbs_qstat_f_running.txt", "R",
     "Job run at Mon Mar 04 at 10:12 on (node01:ncpus=4:mem=8388608kb)"),
    ("pbs_qstat_f_never.txt", "Q",
     "Can Never Run: Insufficient amount of queue resource: ncpus (R: 64 A: 32 T: 32)"),
    ("pbs_qstat_f_torque_completed.txt", "C", ""),
])
def test_pbs_qstat_f(recorded, state, reason):
    assert _parse("pbs", ["1234.pbs01"], 0, recorded) == {"1234.pbs01": JobState(state, reason)}


def test_pbs_meanings():
    pbs = batch.system("pbs")
    never = _parse("pbs", ["1"], 0, "pbs_qstat_f_never.txt")["1"]
    queued = _parse("pbs", ["1"], 0, "pbs_qstat_f_queued.txt")["1"]
    assert pbs.is_hopeless(never) and not pbs.is_hopeless(queued)
    assert pbs.is_ended(JobState("F")) and pbs.is_ended(JobState("C"))
    assert pbs.is_ending(JobState("E")) and not pbs.is_ended(JobState("R"))


@pytest.mark.parametrize("rc, stderr, expected", [
    (153, "qstat: Unknown Job Id 1234.pbs01\n", JobState(GONE)),
    (153, "qstat: Unknown Job Id Error 1234.torque01\n", JobState(GONE)),  # Torque
    (35, "qstat: 1234.pbs01 Job has finished, use -x or -H to obtain historical job "
         "information\n", JobState("F", "finished")),
])
def test_pbs_explicit_answers(rc, stderr, expected):
    assert _parse("pbs", ["1234.pbs01"], rc, stderr=stderr) == {"1234.pbs01": expected}


def test_pbs_server_down_is_not_an_answer():
    assert _parse("pbs", ["1"], 2, stderr="Connection refused\nqstat: cannot connect to "
                  "server pbs01 (errno=15010)\n") == {}


# -- SGE --------------------------------------------------------------------------------

@pytest.mark.parametrize("recorded, expected", [
    ("sge_qstat_j_running.txt", JobState("r")),
    ("sge_qstat_j_running_ge6.txt", JobState("r")),  # Grid Engine 6: usage, no job_state
    ("sge_qstat_j_pending.txt", JobState(
        "qw", '(-l h_vmem=65536M) cannot run in queue "all.q@node01" because it offers '
              "only hc:h_vmem=16.000G")),
    ("sge_qstat_j_error.txt", JobState(
        "Eqw", "03/04/2024 10:12:13 [1000:2345]: error: can't chdir to /scratch/alice/gone: "
               "No such file or directory")),
    ("sge_qstat_j_array.txt", JobState("dr")),  # one task of two is being deleted
])
def test_sge_qstat_j(recorded, expected):
    assert _parse("sge", ["4711"], 0, recorded) == {"4711": expected}


def test_sge_meanings():
    sge = batch.system("sge")
    assert sge.is_hopeless(JobState("Eqw")) and sge.is_hopeless(JobState("Ehqw"))
    assert not sge.is_hopeless(JobState("qw")) and not sge.is_hopeless(JobState("hqw"))
    assert sge.is_ending(JobState("dr")) and sge.is_ending(JobState("dRr"))
    assert not sge.is_ending(JobState("Rr")) and not sge.is_ended(JobState("r"))


@pytest.mark.parametrize("stderr", [
    "Following jobs do not exist: \n4711\n",
    "Following jobs do not exist or permissions are not sufficient: \n4711\n",  # GE 6.2
])
def test_sge_unknown_job_is_gone(stderr):
    assert _parse("sge", ["4711"], 1, stderr=stderr) == {"4711": JobState(GONE)}


def test_sge_qmaster_unreachable_is_not_an_answer():
    assert _parse("sge", ["4711"], 1, stderr=(
        "error: commlib error: got select error (Connection refused)\n"
        'error: unable to send message to qmaster using port 6444 on host "master01": '
        "got send error\n")) == {}


# -- LSF --------------------------------------------------------------------------------

@pytest.mark.parametrize("stdout, expected", [
    ("5150 PEND New job is waiting for scheduling;\n",
     JobState("PEND", "New job is waiting for scheduling;")),
    ("5150 RUN -\n", JobState("RUN", "")),
    ("5150 DONE -\n", JobState("DONE", "")),
    ("lsf_bjobs_array.txt", JobState("EXIT", "")),  # one element of the array exited
])
def test_lsf_bjobs(stdout, expected):
    ids = ["5151"] if stdout.endswith(".txt") else ["5150"]
    assert _parse("lsf", ids, 0, stdout) == {ids[0]: expected}


def test_lsf_answers():
    lsf = batch.system("lsf")
    assert _parse("lsf", ["5150"], 255, stderr="Job <5150> is not found\n") == {
        "5150": JobState(GONE)}
    assert _parse("lsf", ["5150"], 255, stderr="LSF is down. Please wait ...\nbjobs: Failed "
                  "in an LSF library call: Slave LIM configuration is not ready yet\n") == {}
    assert lsf.is_ended(JobState("DONE")) and lsf.is_ended(JobState("EXIT"))
    assert lsf.is_ending(JobState("ZOMBI")) and not lsf.is_ended(JobState("PSUSP"))


# -- the commands themselves, run for real --------------------------------------------------

@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A folder first on PATH; ``put(name, script)`` writes an executable there."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def put(name: str, body: str) -> None:
        path = folder / name
        path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    return put


def test_recorded_answers_through_real_commands(fake_bin):
    fake_bin("qstat", f"""\
        case "$2" in
          1234.pbs01) cat {DATA / 'pbs_qstat_f_running.txt'} ;;
          *) echo "qstat: Unknown Job Id $2" >&2; exit 153 ;;
        esac
        """)
    states = batch.job_states("pbs", ["1234.pbs01", "99.pbs01"])
    assert states == {"1234.pbs01": JobState("R", states["1234.pbs01"].reason),
                      "99.pbs01": JobState(GONE)}


@pytest.mark.parametrize("kind, command", [
    ("slurm", "squeue"), ("pbs", "qstat"), ("sge", "qstat"), ("lsf", "bjobs")])
def test_failing_status_commands_say_unknown(fake_bin, kind, command):
    fake_bin(command, "echo 'internal error: try again later' >&2\nexit 1\n")
    states = batch.job_states(kind, ["11", "12"])
    assert {s.state for s in states.values()} == {UNKNOWN}
    assert all(f"{command} " in s.reason and "exit" in s.reason and "try again" in s.reason
               for s in states.values())


def test_unreadable_answers_say_unknown(fake_bin):
    fake_bin("bjobs", "echo 'garbled'\n")
    fake_bin("squeue", "echo '<html>proxy error</html>'\nexit 0\n")
    assert batch.job_states("lsf", ["5"])["5"].state == UNKNOWN
    # squeue answered (exit 0) without the job: --states=all lists every job it knows
    assert batch.job_states("slurm", ["5"])["5"].state == GONE


def test_missing_and_hanging_commands_say_unknown(fake_bin, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(os.environ["PATH"].split(os.pathsep)[0])))
    states = batch.job_states("sge", ["4711"])
    assert states["4711"].state == UNKNOWN and "'qstat' is not on PATH" in states["4711"].reason
    fake_bin("qstat", "/bin/sleep 10 && echo late\n")  # a wrapper: sleep is its child
    start = time.monotonic()
    states = batch.system("sge").job_states(["4711"], timeout=0.5)
    assert states["4711"].state == UNKNOWN and "did not answer" in states["4711"].reason
    assert time.monotonic() - start < 5


def _dead_record(kind: str, job_ids: list[str]) -> ClusterRecord:
    pid = int(run_python("import os; print(os.getpid())"))  # a process that has ended
    return ClusterRecord(ClusterRecord.new_id(), "dask", kind, "tls://127.0.0.1:1",
                         job_ids=job_ids, owner_pid=pid)


@pytest.mark.parametrize("answer, stale", [
    ("echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", True),
    ("printf '31 TIMEOUT \\n32 CANCELLED \\n'", True),
    ("printf '31 RUNNING vm\\n'", False),
    ("echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1", False),
])
def test_a_record_is_stale_only_when_the_queue_says_its_jobs_ended(fake_bin, answer, stale):
    fake_bin("squeue", answer + "\n")
    assert is_stale(_dead_record("slurm", ["31", "32"])) is stale


# -- adding a system: one file and a profile ----------------------------------------------

TOY = '''
from kale_ext.clusters.batch import BatchSystem, GONE, JobState
from kale_ext.clusters.batch.slurm import SlurmEngineSetLauncher


class Toy(BatchSystem):
    name = "toy"
    directive_prefix = "#TOY"
    cancel_command = ("toydel",)
    ended_states = frozenset({"OVER"})
    dask_cluster = "SLURMCluster"
    engine_launcher = SlurmEngineSetLauncher

    def status_command(self, job_ids):
        return ["toystat", *job_ids]

    def parse_status(self, job_ids, returncode, stdout, stderr):
        return {j: JobState(stdout.strip() or GONE) for j in job_ids}

    def engine_directives(self, options):
        return [f"--cores {options.get('cores') or 1}"]
'''


def test_a_new_system_is_one_file_and_a_profile(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "toy_batch-1.0.dist-info").mkdir(parents=True)
    (site / "toy_batch.py").write_text(TOY)
    (site / "toy_batch-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-batch\nVersion: 1.0\n")
    (site / "toy_batch-1.0.dist-info" / "entry_points.txt").write_text(
        "[kale_ext.batch]\ntoy = toy_batch:Toy\n")
    profile = tmp_path / "toy.yaml"
    profile.write_text("kale:\n  profiles:\n    toy-site:\n      kind: toy\n"
                       "      backend: ipyparallel\n      queue: q1\n      cores: 2\n")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("DASK_CONFIG", str(tmp_path))
    out = run_python(textwrap.dedent(f"""\
        from kale_ext import config
        from kale_ext.clusters._base import KINDS
        from kale_ext.clusters import batch, is_stale, ClusterRecord
        from kale_ext.clusters._ipp_launchers import ENGINE_LAUNCHERS, launcher_traits
        options = config.resolve("toy-site")
        assert "toy" in KINDS and options["kind"] == "toy", (KINDS, options)
        launcher = ENGINE_LAUNCHERS["toy"](
            profile_dir={str(tmp_path)!r}, cluster_id="kc-toy", engine_set_id="s1",
            batch_file_name={str(tmp_path / 'toy.sh')!r},
            **launcher_traits("toy", {{"queue": options["queue"], "cores": options["cores"]}}))
        print(launcher.render(1))
        print(batch.job_states("toy", ["1"]))
        """))
    assert "#TOY --cores 2" in out and "--partition=q1" in out
    assert "JobState(state='UNKNOWN'" in out and "'toystat' is not on PATH" in out


def test_job_scripts_still_come_from_each_systems_class(tmp_path):
    # The dask-jobqueue class and directives of each system, through the profiles.
    for kind, line in [("pbs", "#PBS -A acct"), ("sge", "#$ -P acct"),
                       ("lsf", '#BSUB -P "acct"'), ("slurm", "#SBATCH -A acct")]:
        walltime = "01:00" if kind == "lsf" else "01:00:00"
        script = job_script(kind, {"cores": 1, "memory": "1GiB", "walltime": walltime,
                                   "account": "acct"})
        assert line in script
    options = config.resolve("slurm-dev")
    assert "#SBATCH --cpus-per-task=1" in launcher_traits("slurm", options)["kale_directives"]
