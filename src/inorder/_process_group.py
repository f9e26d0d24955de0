"""Stopping a worker's process group and waiting until every process in it has ended.

A worker leads a process group, and the processes its items start join that group.
``os.killpg`` signals them all but returns at once, and once the worker is gone they
are no one's children here: nothing can ``wait()`` for them. On Linux this module finds
the group's live members in ``/proc`` and waits for each to end through a pidfd (a file
descriptor that becomes readable when its process exits), so that stopping a pipeline
returns only once what it promised to stop has stopped. Elsewhere the group is signalled
and not waited for.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import time

logger = logging.getLogger("inorder")

# How long stop_group() waits for the members of a group to end after SIGKILL: they
# end within milliseconds unless stuck in the kernel (uninterruptible sleep, such as I/O
# on a dead network file system), which no signal can cut short.
STOP_WAIT_SECONDS = 5.0


def live_members(group: int) -> list[int]:
    """The pids of the processes in process group ``group`` that have not ended (Linux;
    elsewhere an empty list)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    members = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        # After the command name (in parentheses, which it may itself contain): the
        # state, the parent's pid, the process group.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == group and fields[0] not in (b"Z", b"X"):
            members.append(int(name))
    return members


def stop_group(group: int) -> None:
    """SIGKILL every process in ``group`` and return once each has ended.

    Members started meanwhile are signalled and waited for too. A member that is still
    there after ``STOP_WAIT_SECONDS`` is logged, not waited for any longer.
    """
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while True:
        try:
            os.killpg(group, 0)  # one system call tells whether the group has any member
        except OSError:
            return
        members = live_members(group)
        if not members:
            return
        with contextlib.ExitStack() as stack:
            waiting = select.poll()
            pidfds = set()
            for pid in members:
                with contextlib.suppress(OSError):  # ended already; or no pidfds here
                    pidfd = os.pidfd_open(pid)
                    stack.callback(os.close, pidfd)
                    waiting.register(pidfd, select.POLLIN)
                    pidfds.add(pidfd)
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError as exc:
                if exc.errno not in (errno.ESRCH, errno.EPERM):
                    raise
                return
            if not pidfds:
                return  # nothing to wait on: signalled, as on other systems
            while pidfds:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.warning(
                        "processes %s of a stopped worker's group %d did not end within "
                        "%g s of SIGKILL (stuck in the kernel?); not waiting for them",
                        members,
                        group,
                        STOP_WAIT_SECONDS,
                    )
                    return
                for pidfd, _ in waiting.poll(remaining * 1000):
                    waiting.unregister(pidfd)
                    pidfds.discard(pidfd)
