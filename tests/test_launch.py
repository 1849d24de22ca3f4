"""``seq2seq-torchrun``: each way a multi-host start goes wrong is one ``error:`` line, not torchrun's traceback."""

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from conftest import REPO
from seq2seq import launch as launcher

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


def stderr_lines(process) -> queue.Queue:
    """The process's stderr, line by line as it comes (None at its end)."""
    lines = queue.Queue()

    def read():
        for line in process.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue, start: str, seconds: float) -> list[str]:
    """Every line up to the first that starts with ``start``; fails after ``seconds``."""
    seen, deadline = [], time.monotonic() + seconds
    while not seen or not seen[-1].startswith(start):
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, seen
        seen.append(line)
    return seen


def rest(lines: queue.Queue) -> list[str]:
    return [line for line in iter(lines.get, None)]


def held_port() -> socket.socket:
    """A port held by a program that is not a rendezvous store: it accepts, and never answers."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken


def test_a_node_that_never_joins_is_one_line_naming_the_endpoint(tmp_path):
    port = free_port()
    done = launch(*two_nodes(port, "join_timeout=3"), "train.py", f"hydra.run.dir={tmp_path / 'run'}")
    _, stderr = done.communicate(timeout=120)
    assert done.returncode == 2 and "Traceback" not in stderr, stderr
    waiting = [line for line in stderr.splitlines() if line.startswith("waiting")]
    assert len(waiting) == 1 and re.fullmatch(  # at the start; the next would come after a minute
        rf"waiting for 1 of 2 nodes at 127\.0\.0\.1:{port} \(\d s so far; gives up after 3 s\)", waiting[0]
    ), stderr
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


def test_a_port_held_by_another_program_is_one_line_within_10_s_where_no_host_is_named():
    with held_port() as taken:  # without is_host, torchrun joins what holds the port as a client and hangs
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = launch(*two_nodes(port, "join_timeout=30"), "train.py")
        _, stderr = done.communicate(timeout=60)
        seconds = time.monotonic() - started
    assert done.returncode == 2 and "Traceback" not in stderr and seconds < 10, (seconds, stderr)
    assert stderr.splitlines() == [
        f"error: the rendezvous port {port} is in use on this host by a program that is not a rendezvous store; "
        "choose another port in --rdzv_endpoint on every host, or stop that program"
    ]


def test_a_remote_endpoint_held_by_another_program_is_named(monkeypatch, capsys):
    import torch.distributed.elastic.rendezvous.utils as utils

    monkeypatch.setattr(utils, "_matches_machine_hostname", lambda host: False)  # as if on another machine
    args = SimpleNamespace(standalone=False, rdzv_backend="c10d", rdzv_conf="is_host=0")
    with held_port() as taken:
        endpoint = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(SystemExit) as stopped:
            launcher.check_endpoint(args, endpoint)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {endpoint} answers, but not as a rendezvous store (another program holds port "
        f"{endpoint.rsplit(':')[1]} there); check --rdzv_endpoint on every host, or choose another port\n"
    )


def test_ctrl_c_on_a_held_port_exits_130_within_5_s():
    with held_port() as taken:
        taken.settimeout(60)
        waiting = launch(*two_nodes(taken.getsockname()[1]), "train.py", start_new_session=True)
        taken.accept()[0].close()  # the launcher knocked: it is past start-up, on the port
        signalled = time.monotonic()
        os.killpg(waiting.pid, signal.SIGINT)
        _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 130 and time.monotonic() - signalled < 5, stderr
    assert stderr.splitlines() == [
        "error: stopped by SIGINT; a run that had started saved last.pt (continue with train.resume=auto)"
    ]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_torch_retries_an_endpoint_that_does_not_answer_exits_130_within_5_s(stop):
    port = free_port()  # nothing listens: torch's C++ store client retries for a minute and checks no signal
    waiting = launch(*two_nodes(port, "is_host=0"), "train.py", start_new_session=True)
    lines = stderr_lines(waiting)
    assert wait_for_line(lines, "waiting", 60) == [
        f"waiting for 2 of 2 nodes at 127.0.0.1:{port} (no rendezvous store answers there yet)"
    ]
    signalled = time.monotonic()
    os.killpg(waiting.pid, stop)
    waiting.wait(timeout=60)
    assert waiting.returncode == 130 and time.monotonic() - signalled < 5
    assert rest(lines) == [
        f"error: stopped by {stop.name}; a run that had started saved last.pt (continue with train.resume=auto)"
    ]


def test_the_waiting_line_comes_at_the_start_and_every_minute():
    args = SimpleNamespace(nnodes="3", rdzv_conf="join_timeout=900", rdzv_backend="c10d", standalone=False)
    lines = launcher.WaitingLines(args, "host0:29500")
    started = lines.since
    assert lines.due(started + 1) is None  # no store answers yet: a moment's grace
    assert lines.due(started + 3) == "waiting for 3 of 3 nodes at host0:29500 (no rendezvous store answers there yet)"
    state = SimpleNamespace(participants={"this node": 0})
    lines.attach(SimpleNamespace(next_rendezvous=lambda: None, _state_holder=SimpleNamespace(state=state)))
    lines.begin()  # a round starts: its first line as soon as this node is in
    assert lines.due(lines.since) == "waiting for 2 of 3 nodes at host0:29500 (0 s so far; gives up after 900 s)"
    assert lines.due(lines.since + 59) is None
    state.participants["second"] = 1
    assert lines.due(lines.since + 60) == "waiting for 1 of 3 nodes at host0:29500 (60 s so far; gives up after 900 s)"
    assert lines.due(lines.since + 90) is None
    state.participants["third"] = 2
    assert lines.due(lines.since + 120) is None  # all in
    lines.end()
    state.participants.pop("third")
    assert lines.due(lines.since + 180) is None  # not waiting: training


def test_a_single_node_run_prints_no_waiting_line():
    args = SimpleNamespace(nnodes="1", rdzv_conf="", rdzv_backend="c10d", standalone=True)
    lines = launcher.WaitingLines(args, "localhost:0")
    assert lines.due(lines.since + 3600) is None
