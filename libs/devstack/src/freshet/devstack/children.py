"""Child processes that end with the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for Popen: if the parent is killed outright, the kernel stops the child.

    Children run in sessions of their own (so Ctrl-C reaches only the launcher); without this a
    SIGKILLed launcher or test run would leave them running. Linux only; elsewhere a no-op.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
