"""``seq2seq-torchrun``: torchrun, with one line for each way a multi-host start goes wrong.

It takes torchrun's arguments unchanged (``seq2seq-torchrun --nnodes=2 --nproc_per_node=1
--rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 train.py ...``) and runs torchrun's own launcher
in this process. What torchrun answers with a traceback of its agent becomes one ``error:`` line
and a non-zero exit status:

- a host that never joins the rendezvous (after ``join_timeout``, 600 s unless
  ``--rdzv_conf=join_timeout=N``): the endpoint, how many nodes were expected, what to check;
- the rendezvous port already in use on the first host, or an endpoint that cannot be reached;
- Ctrl-C (or SIGTERM) while waiting or training: the workers save ``last.pt`` on the same signal;
- a training process that fails: its own ``error:`` line is above; this names the rank and exit
  status, and exits with that status (2 for bad input, as ``train.py``).

torchrun's warnings and a worker's own output pass through unchanged.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence


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
        signal = getattr(error, "sigval", None)
        name = signal.name if signal is not None else "SIGINT"
        fail(f"stopped by {name}; a run that had started saved last.pt (continue with train.resume=auto)", 130)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        code = failure.exitcode if isinstance(failure.exitcode, int) and failure.exitcode > 0 else 1
        status = f"signal {-failure.exitcode}" if failure.exitcode < 0 else f"exit status {failure.exitcode}"
        fail(
            f"training process rank {rank} on {socket.gethostname()} failed ({status}); its own messages are above",
            code,
        )


def join_timeout(rdzv_conf: str) -> int:
    """The rendezvous join timeout in seconds that ``--rdzv_conf`` sets, or torchrun's default."""
    for item in (rdzv_conf or "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == "join_timeout" and value.strip().isdigit():
            return int(value)
    return 600


def fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
