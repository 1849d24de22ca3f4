"""Two hosts over a real network: ``torchrun --nnodes=2`` in two network namespaces joined by a veth
pair (c10d rendezvous on the first host's address, gloo over TCP), against a 2-process single-host
run.

The namespaces need root and ``ip`` (iproute2; both are there on these machines and in CI). Where
they cannot be made, the tests say so in one line and run the same two agents on loopback.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY
from seq2seq.history import read as read_history
from seq2seq.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

# dropout 0 and one thread per process, as the single-host DDP test
BASE = [*TINY, "attention=bahdanau", "model.dropout=0", "train.valid_every=5", "train.checkpoint_every=5"]
TOLERANCE = 1e-5


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def network():
    """Two hosts: ``(prefix command, address, interface)`` each; namespaces where root and ``ip`` allow."""
    tag = f"s2s{os.getpid() % 100000}"
    subnet = f"10.{77 + os.getpid() % 50}.{os.getpid() % 250}"
    names, ifaces = [f"{tag}h0", f"{tag}h1"], [f"{tag}v0", f"{tag}v1"]
    made = []
    try:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise PermissionError("not root" if os.geteuid() != 0 else "no ip command")
        for name in names:
            _sh("ip", "netns", "add", name)
            made.append(name)
        _sh("ip", "link", "add", ifaces[0], "type", "veth", "peer", "name", ifaces[1])
        for k, (name, iface) in enumerate(zip(names, ifaces)):
            _sh("ip", "link", "set", iface, "netns", name)
            _sh("ip", "-n", name, "addr", "add", f"{subnet}.{k + 1}/24", "dev", iface)
            _sh("ip", "-n", name, "link", "set", iface, "up")
            _sh("ip", "-n", name, "link", "set", "lo", "up")
        hosts = [
            (["ip", "netns", "exec", name], f"{subnet}.{k + 1}", iface)
            for k, (name, iface) in enumerate(zip(names, ifaces))
        ]
    except (PermissionError, subprocess.CalledProcessError) as error:
        reason = error.stderr.strip() if isinstance(error, subprocess.CalledProcessError) else str(error)
        print(f"network namespaces unavailable ({reason}): two torchrun agents on loopback instead", file=sys.stderr)
        hosts = [([], "127.0.0.1", "lo"), ([], "127.0.0.1", "lo")]
    try:
        yield hosts
    finally:
        for name in made:  # deleting a namespace deletes its end of the veth pair, and the pair with it
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def agent(host, endpoint, args, corpus_root, extra_env=(), restarts=0, is_host=False):
    prefix, address, iface = host
    env = {
        **os.environ,
        "SEQ2SEQ_DATA_DIR": str(corpus_root),
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": iface,  # gloo over this host's interface, not whatever the hostname resolves to
        **dict(extra_env),
    }
    command = [
        *prefix,
        sys.executable,
        "-m",
        "seq2seq.launch",  # seq2seq-torchrun: torchrun, with one-line errors
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={endpoint}",
        "--rdzv_id=two-hosts",
        # which agent serves the rendezvous store: torchrun guesses it by hostname, and both
        # namespaces share the machine's hostname, so the first host is told
        f"--rdzv_conf=is_host={int(is_host)}",
        f"--local-addr={address}",  # the address the other host reaches this one at
        f"--max-restarts={restarts}",
        "--monitor-interval=1",
        "train.py",
        *args,
    ]
    # env for a command under `ip netns exec` passes through: it execs the command with this environment
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_all(args) -> None:
    """The agents and their workers (torchrun starts each worker in a session of its own, so killing
    an agent leaves them holding the output pipes): every process whose command line has our run dir."""
    (marker,) = [a for a in args if a.startswith("hydra.run.dir=")]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(int(pid), signal.SIGKILL)


def run_two_hosts(hosts, args, corpus_root, host1_env=(), restarts=0):
    port = 29400 + os.getpid() % 500
    endpoint = f"{hosts[0][1]}:{port}"
    first = agent(hosts[0], endpoint, args, corpus_root, restarts=restarts, is_host=True)
    time.sleep(0.5)  # the first host's store listens first (the second would wait for it anyway)
    second = agent(hosts[1], endpoint, args, corpus_root, host1_env, restarts)
    try:
        outs = [p.communicate(timeout=180) for p in (first, second)]
    except subprocess.TimeoutExpired:
        kill_all(args)
        outs = [p.communicate() for p in (first, second)]
        pytest.fail(f"the two hosts did not finish in 180 s:\n{outs[0][1][-6000:]}\n---\n{outs[1][1][-6000:]}")
    return [p.returncode for p in (first, second)], outs


def single_host(args, corpus_root):
    env = {**os.environ, "SEQ2SEQ_DATA_DIR": str(corpus_root), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def one_host(corpus_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("one-host") / "run"
    single_host([*BASE, "train.max_steps=12", f"hydra.run.dir={out}"], corpus_root)
    return out


def same_weights(a, b, tolerance):
    want, got = load_checkpoint(a / "last.pt")["model"], load_checkpoint(b / "last.pt")["model"]
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=tolerance, msg=key)


def test_two_hosts_over_a_network_train_as_one_host(one_host, corpus_root, tmp_path):
    out = tmp_path / "run"  # one directory both hosts see: a shared filesystem
    with network() as hosts:
        codes, outs = run_two_hosts(hosts, [*BASE, "train.max_steps=12", f"hydra.run.dir={out}"], corpus_root)
    assert codes == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    saved = load_checkpoint(out / "last.pt")
    assert saved["progress"]["step"] == 12 and len(saved["rng_by_rank"]) == 2
    same_weights(one_host, out, TOLERANCE)


def test_a_node_lost_mid_run_restarts_and_finishes_as_if_never_lost(one_host, corpus_root, tmp_path):
    out = tmp_path / "run"
    marker = tmp_path / "crashed-once"
    args = [*BASE, "train.max_steps=12", "train.resume=auto", f"hydra.run.dir={out}"]
    # the second host's worker dies (SIGKILL) at its 8th update, after the checkpoint of step 5
    lost = [("SEQ2SEQ_CRASH_AT", "step:8"), ("SEQ2SEQ_CRASH_ONCE", str(marker))]
    with network() as hosts:
        codes, outs = run_two_hosts(hosts, args, corpus_root, lost, restarts=1)
    logs = outs[0][1] + outs[1][1]
    assert codes == [0, 0], logs[-4000:]
    assert marker.exists()  # it did die once
    log = (out / "train.log").read_text()
    assert "starting a new run" in log and "exists, resuming at step 5" in log
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == 12
    assert not list(out.glob(".*.tmp*"))  # no half-written checkpoint left
    same_weights(one_host, out, TOLERANCE)
    assert [e["step"] for e in read_history(out)[0]] == [5, 10, 12]  # each validation once


def test_a_run_dir_the_other_host_cannot_see_is_refused_by_every_rank(corpus_root, tmp_path):
    """Each host on its own disk would resume from what it holds and the two runs would diverge."""
    out = tmp_path / "run"
    # the second host mounts an empty file system of its own over the folder that holds the run dir
    root = ["--mount", "--propagation", "private"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    private = ["unshare", *root, "sh", "-c", f'mount -t tmpfs none "{tmp_path}" && exec "$@"', "sh"]
    with network() as hosts:
        prefix, address, iface = hosts[1]
        hosts = [hosts[0], ([*prefix, *private], address, iface)]
        codes, outs = run_two_hosts(hosts, [*BASE, "train.max_steps=4", f"hydra.run.dir={out}"], corpus_root)
    assert codes[0] != 0 and codes[1] != 0
    line = f"error: the run directory {out} is not shared between the hosts: rank 1 on "
    assert line in outs[0][1] and line in outs[1][1], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert "put hydra.run.dir on a filesystem every host mounts" in outs[0][1]
    assert not out.exists()  # rank 0 wrote nothing that stays
