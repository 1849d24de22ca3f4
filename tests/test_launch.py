"""``seq2seq-torchrun``: each way a multi-host start goes wrong is one ``error:`` line, not torchrun's traceback."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(*args, **kwargs):
    command = [sys.executable, "-m", "seq2seq.launch", *args]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def two_nodes(port, *conf):
    rdzv = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", "--rdzv_id=launch-test"]
    return [*rdzv, f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_conf={','.join(conf)}"]


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_node_that_never_joins_is_one_line_naming_the_endpoint(tmp_path):
    port = free_port()
    done = launch(*two_nodes(port, "join_timeout=3"), "train.py", f"hydra.run.dir={tmp_path / 'run'}")
    _, stderr = done.communicate(timeout=120)
    assert done.returncode == 2 and "Traceback" not in stderr, stderr
    assert errors(stderr) == [
        f"error: the rendezvous at 127.0.0.1:{port} timed out: 2 node(s) were expected and not all joined "
        f"within 3 s; start the same command on every host (same --rdzv_endpoint and --rdzv_id) and check that "
        f"each reaches 127.0.0.1:{port} (address, port, firewall)"
    ]
    assert not (tmp_path / "run").exists()


def test_a_rendezvous_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = launch(*two_nodes(port, "is_host=1", "join_timeout=30"), "train.py")
        _, stderr = done.communicate(timeout=120)
    assert done.returncode == 2 and "Traceback" not in stderr, stderr
    assert errors(stderr) == [
        f"error: the rendezvous port {port} is already in use on this host (an earlier torchrun still running?); "
        "choose another port in --rdzv_endpoint on every host, or stop that process"
    ]


def test_ctrl_c_while_waiting_for_the_other_host_is_one_line(tmp_path):
    port = free_port()
    waiting = launch(*two_nodes(port, "is_host=1", "join_timeout=60"), "train.py", start_new_session=True)
    deadline = time.monotonic() + 60
    while True:  # the rendezvous store listens: the agent is past start-up, waiting for a second node
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline and waiting.poll() is None, waiting.communicate()[1]
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(waiting.pid, signal.SIGINT)  # Ctrl-C at a terminal signals the whole process group
    _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 130 and "Traceback" not in stderr, stderr
    assert errors(stderr) == [
        "error: stopped by SIGINT; a run that had started saved last.pt (continue with train.resume=auto)"
    ]


def test_a_failing_training_process_keeps_its_own_line_and_exit_status(tmp_path):
    done = launch("--standalone", "--nproc_per_node=2", "train.py", "model.dropout=2")
    _, stderr = done.communicate(timeout=120)
    assert done.returncode == 2 and "Traceback" not in stderr, stderr
    lines = errors(stderr)
    assert lines[:2] == ["error: model.dropout=2.0 is out of range: expected in [0, 1)"] * 2  # each rank's own
    assert len(lines) == 3 and re.fullmatch(  # whichever rank the agent saw fail first
        rf"error: training process rank [01] on {re.escape(socket.gethostname())} failed \(exit status 2\); "
        "its own messages are above",
        lines[2],
    )
