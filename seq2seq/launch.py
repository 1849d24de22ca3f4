"""``seq2seq-torchrun``: torchrun, with one line for each way a multi-host start goes wrong.

It takes torchrun's arguments unchanged (``seq2seq-torchrun --nnodes=2 --nproc_per_node=1
--rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 train.py ...``) and runs torchrun's own launcher
in this process. What torchrun answers with a traceback of its agent, or with a silent wait,
becomes one line and a non-zero exit status:

- a host that never joins the rendezvous (after ``join_timeout``, 600 s unless
  ``--rdzv_conf=join_timeout=N``): the endpoint, how many nodes were expected, what to check;
  while the rendezvous waits, a ``waiting for N of M nodes at HOST:PORT`` line at the start and
  every minute;
- the rendezvous port already in use on the first host, or held by a program that is not a
  rendezvous store (torchrun would hang on it), or an endpoint that cannot be reached;
- Ctrl-C (or SIGTERM) while waiting or training: the workers save ``last.pt`` on the same signal;
  while no worker runs, within a few seconds even where torch waits inside its C++ store client;
- a training process that fails: its own ``error:`` line is above; this names the rank and exit
  status, and exits with that status (2 for bad input, as ``train.py``).

torchrun's warnings and a worker's own output pass through unchanged.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

STOPPED = "stopped by {}; a run that had started saved last.pt (continue with train.resume=auto)"
_said = threading.Lock()  # the one final line: whichever of main() and the stop watchdog comes first
_out = sys.stderr  # where our lines go; torch's C++ output is silenced after a stop signal


def main(argv: Sequence[str] | None = None) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import (
        RendezvousClosedError,
        RendezvousConnectionError,
        RendezvousTimeoutError,
    )
    from torch.distributed.run import parse_args, run

    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    endpoint = args.rdzv_endpoint or "localhost:29400"
    try:
        watch_stop_signals()
        check_endpoint(args, endpoint)
        with WaitingLines(args, endpoint):
            run(args)
    except RendezvousTimeoutError:
        fail(
            f"the rendezvous at {endpoint} timed out: {args.nnodes} node(s) were expected and not all joined "
            f"within {join_timeout(args.rdzv_conf)} s; start the same command on every host (same "
            f"--rdzv_endpoint and --rdzv_id) and check that each reaches {endpoint} (address, port, firewall)",
            2,
        )
    except RendezvousConnectionError as error:
        cause = " ".join(str(error.__cause__ or error.__context__ or error).split())
        if "EADDRINUSE" in cause or "address already in use" in cause.lower():
            fail(
                f"the rendezvous port {endpoint.rsplit(':', 1)[-1]} is already in use on this host (an earlier "
                f"torchrun still running?); choose another port in --rdzv_endpoint on every host, or stop that process",
                2,
            )
        fail(f"cannot reach the rendezvous at {endpoint}: {cause[:300]}", 2)
    except RendezvousClosedError:
        fail(f"the rendezvous at {endpoint} was closed: another host finished or gave up (see its output)", 1)
    except (KeyboardInterrupt, SignalException) as error:
        signal_ = getattr(error, "sigval", None)
        fail(STOPPED.format(signal_.name if signal_ is not None else "SIGINT"), 130)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        code = failure.exitcode if isinstance(failure.exitcode, int) and failure.exitcode > 0 else 1
        status = f"signal {-failure.exitcode}" if failure.exitcode < 0 else f"exit status {failure.exitcode}"
        fail(
            f"training process rank {rank} on {socket.gethostname()} failed ({status}); its own messages are above",
            code,
        )


def check_endpoint(args, endpoint: str) -> None:
    """Refuse a rendezvous port held by a program that is not a rendezvous store: torchrun would hang on it.

    The store's host (``--rdzv_conf=is_host=1``) finds its port taken when it binds. Any other
    launcher, including one that guesses it is the host from the address and then falls back to
    joining, connects as a store client and waits for an answer that a program speaking another
    protocol never sends (torchrun then waits 14 minutes, deaf to Ctrl-C). So a port that accepts
    connections must answer torch's own store client within a few seconds.
    """
    from torch.distributed.elastic.rendezvous.utils import _matches_machine_hostname, parse_rendezvous_endpoint

    if args.standalone or args.rdzv_backend != "c10d" or rdzv_conf(args.rdzv_conf, "is_host").lower() in TRUE:
        return
    host, port = parse_rendezvous_endpoint(endpoint, default_port=29400)
    try:
        socket.create_connection((host, port), timeout=2).close()
    except (OSError, OverflowError):
        return  # nothing listens there yet (the host will), or unreachable: torchrun's own checks say so
    if answers_as_store(host, port):
        return
    if _matches_machine_hostname(host):
        fail(
            f"the rendezvous port {port} is in use on this host by a program that is not a rendezvous store; "
            "choose another port in --rdzv_endpoint on every host, or stop that program",
            2,
        )
    fail(
        f"{endpoint} answers, but not as a rendezvous store (another program holds port {port} there); "
        "check --rdzv_endpoint on every host, or choose another port",
        2,
    )


TRUE = ("1", "true", "t", "yes", "y")  # the spellings torch's RendezvousParameters.get_as_bool takes


def answers_as_store(host: str, port: int, seconds: float = 2.0) -> bool:
    """Whether torch's store client connects to ``host:port`` within ``seconds``.

    In a thread: the client waits for ever on a peer that accepts and never answers, whatever its
    timeout. Its retry warnings (stack frames from C++) are silenced meanwhile.
    """
    from torch.distributed import TCPStore

    answered = []

    def connect() -> None:
        try:
            TCPStore(host, port, is_master=False, timeout=timedelta(seconds=seconds))
            answered.append(True)
        except Exception:  # noqa: BLE001 - any failure means the same: no store answers there
            pass

    silence_native(True)
    try:
        probe = threading.Thread(target=connect, daemon=True)
        probe.start()
        probe.join(seconds + 0.5)
    finally:
        silence_native(False)
    return bool(answered)


_lines = None  # a copy of stderr for this launcher's own lines, made at start: they pass while fd 2 is silenced
_stopping = threading.Event()


def silence_native(on: bool) -> None:
    """Point fd 2, where torch's C++ store client writes its retry warnings, at /dev/null (or back)."""
    if _lines is None:
        return
    if on:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    elif not _stopping.is_set():
        os.dup2(_lines.fileno(), 2)


def watch_stop_signals(grace: float = 2.0) -> None:
    """Make Ctrl-C and SIGTERM end the launcher with one line, also where torch does not return to Python.

    SIGTERM raises what torchrun's own handler raises (it installs that only once workers start,
    so a SIGTERM before would end the launcher without a word). A signal also reaches a watchdog
    thread through Python's wakeup fd: with no worker running (nothing to save) and the main
    thread still busy after ``grace`` seconds — inside torch's C++ store client, which retries for
    a minute and checks no signal — the watchdog says the line and exits 130.
    """
    global _lines
    if threading.current_thread() is not threading.main_thread():
        return
    from torch.distributed.elastic.multiprocessing.api import SignalException

    def raise_stop(signum: int, _frame) -> None:
        raise SignalException(f"Process {os.getpid()} got signal: {signum}", sigval=signal.Signals(signum))

    signal.signal(signal.SIGTERM, raise_stop)
    _lines = os.fdopen(os.dup(2), "w", buffering=1)
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=stop_watchdog, args=(reader, writer, grace), daemon=True).start()


def stop_watchdog(reader: socket.socket, writer: socket.socket, grace: float) -> None:
    while True:  # with workers running, torchrun forwards the signal, and they save last.pt first
        received = reader.recv(64)
        if not received:
            return
        stops = [number for number in received if number in (signal.SIGINT, signal.SIGTERM)]
        if stops and not has_workers():
            break
    _stopping.set()
    silence_native(True)  # torch's "retrying (Interrupted system call)" warnings
    time.sleep(grace)
    if _said.acquire(blocking=False):
        print(f"error: {STOPPED.format(signal.Signals(stops[0]).name)}", file=_lines, flush=True)
        os._exit(130)


def has_workers() -> bool:
    """Whether this launcher has child processes (torchrun's workers); True where /proc cannot tell."""
    try:
        return any((task / "children").read_text().strip() for task in Path("/proc/self/task").iterdir())
    except OSError:
        return True


class WaitingLines:
    """``waiting for N of M nodes at HOST:PORT`` while a c10d rendezvous waits: at its start, then every minute.

    The count comes from the rendezvous handler torchrun creates (captured through the registry
    function it calls); before there is one, no store answers at the endpoint yet.
    """

    def __init__(self, args, endpoint: str, every: float = 60.0, first_after: float = 3.0) -> None:
        from torch.distributed.run import parse_min_max_nnodes

        self.endpoint, self.every, self.first_after = endpoint, every, first_after
        self.nodes = parse_min_max_nnodes(args.nnodes)[0]
        self.timeout = join_timeout(args.rdzv_conf)
        self.enabled = args.rdzv_backend == "c10d" and not args.standalone and self.nodes > 1
        self.handler = None
        self.begin()
        self._done = threading.Event()

    def begin(self) -> None:
        self.since, self.said, self.last, self.waiting = time.monotonic(), 0, 0.0, self.enabled

    def end(self) -> None:
        self.waiting = False

    def attach(self, handler) -> None:
        """Follow ``handler``'s rounds: each call of ``next_rendezvous`` is a wait."""
        next_round = handler.next_rendezvous

        def next_rendezvous():
            self.begin()
            try:
                return next_round()
            finally:
                self.end()

        handler.next_rendezvous = next_rendezvous
        self.handler = handler

    def joined(self) -> int | None:
        """Nodes in the current round, None where the handler's state cannot be read."""
        try:
            return len(self.handler._state_holder.state.participants)
        except AttributeError:
            return None

    def due(self, now: float) -> str | None:
        """The line to print at ``now`` (monotonic seconds), if one is due."""
        joined = self.joined() if self.handler is not None else 0
        elapsed = now - self.since
        if not self.waiting or (self.said and now < self.last + self.every):
            return None
        if not self.said and not joined and elapsed < self.first_after:  # the first: once this node is in
            return None
        missing = self.nodes - (joined or 0)
        if missing <= 0:
            return None
        self.said, self.last = self.said + 1, now
        where = f"nodes at {self.endpoint}"
        if self.handler is None:
            return f"waiting for {missing} of {self.nodes} {where} (no rendezvous store answers there yet)"
        limit = f"{elapsed:.0f} s so far; gives up after {self.timeout} s"
        if joined is None:
            return f"waiting for {where} ({self.nodes} expected; {limit})"
        return f"waiting for {missing} of {self.nodes} {where} ({limit})"

    def __enter__(self) -> WaitingLines:
        import torch.distributed.elastic.rendezvous.registry as registry

        self._registry, self._create = registry, registry.get_rendezvous_handler

        def create(params):
            handler = self._create(params)
            self.attach(handler)
            return handler

        if self.enabled:
            registry.get_rendezvous_handler = create
            threading.Thread(target=self._print, daemon=True).start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._registry.get_rendezvous_handler = self._create

    def _print(self) -> None:
        while not self._done.wait(0.2):
            line = self.due(time.monotonic())
            if line and not self._done.is_set():
                print(line, file=_lines or sys.stderr, flush=True)


def rdzv_conf(conf: str, key: str) -> str:
    """The value ``--rdzv_conf`` gives ``key``, or ''."""
    for item in (conf or "").split(","):
        name, _, value = item.partition("=")
        if name.strip() == key:
            return value.strip()
    return ""


def join_timeout(conf: str) -> int:
    """The rendezvous join timeout in seconds that ``--rdzv_conf`` sets, or torchrun's default."""
    value = rdzv_conf(conf, "join_timeout")
    return int(value) if value.isdigit() else 600


def fail(message: str, code: int) -> None:
    if _said.acquire(blocking=False):
        print(f"error: {message}", file=_lines or sys.stderr, flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
