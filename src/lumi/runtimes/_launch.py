"""Starting the replica template (``python -m lumi.runtimes.zygote``) with the standard library
only, so that ``lumi run`` can start it first: its imports then run beside the CLI's loading of
the config and the app instead of after them (``bench/replica_bench.py``).

:func:`launch_early` starts one and keeps it; the process runtime's template takes it
(:func:`take_early`) instead of starting its own; :func:`discard_early` ends it if nothing did
(no service on the process runtime, or the config did not load)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

CONTROL_FD = "LUMI_ZYGOTE_FD"
PARENT_PID = "LUMI_PARENT_PID"  # lumi.runtimes.serve's (not imported: it loads the config)


class Launched:
    """A started template: its process and this side of its control socket."""

    def __init__(self, proc: subprocess.Popen[bytes], control: socket.socket) -> None:
        self.proc, self.control = proc, control

    def discard(self) -> None:
        """End the template (it has forked nothing yet) and close the socket."""
        self.control.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def launch() -> Launched:
    """Start a template; it reports ``{"ready": true}`` on the control socket once imported."""
    # One message per request and per reply, fds alongside: no framing needed.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lumi.runtimes.zygote"],
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            env={**os.environ, CONTROL_FD: str(theirs.fileno()), PARENT_PID: str(os.getpid())},
            process_group=0,  # the terminal's Ctrl-C is the supervisor's to handle
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Launched(proc, ours)


_early: Launched | None = None


def launch_early() -> None:
    """Start the template the process runtime will take (once per process)."""
    global _early
    if _early is None:
        _early = launch()


def take_early() -> Launched | None:
    """The template :func:`launch_early` started, if it is still there to be taken."""
    global _early
    taken, _early = _early, None
    return taken


def discard_early() -> None:
    """End the early template if no runtime took it."""
    taken = take_early()
    if taken is not None:
        taken.discard()
