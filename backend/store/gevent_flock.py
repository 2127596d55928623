"""Waiting for the journal lock without stalling a gevent worker (`JournalLock.acquire` calls it).

A gunicorn gevent worker runs every request as a greenlet on one OS thread. A blocking `flock`
stops that thread: while another process holds the journal lock, every request of the worker
waits with the one write that needs the lock, reads included (bench/gevent_lock_bench.py).

Under gevent, the wait happens in a thread of the hub's native thread pool instead, and the
writing greenlet yields to the others until it is over. It is still a blocking `flock`, so the
kernel queues the waiter and wakes it when the holder lets go: writers keep the fairness that
`JournalLock` chose the blocking call for, which a `LOCK_NB` retry loop with sleeps would give
up. A free lock is taken with one `LOCK_NB` call, without the hop. Where gevent has not patched
`threading` (the agent's asyncio process, the CLI, tests) this is the plain blocking call, as
before, and gevent is not even imported.

A `flock` belongs to the open file, not to a thread, so the lock taken in a pool thread is the
store's to use and release in the greenlet. That the store's own locks are greenlet locks
under the patch is what makes the hop safe: a greenlet that waits for the writing greenlet's
in-process lock yields to the hub instead of blocking the thread the writer must resume on.
The hop alone would not let reads answer, though: the waiting write must not hold the lock
that reads take. `JournalStore` waits holding only its writers' lock and takes its `_mutex`
once it has the file lock; so, too, at most one pool thread per store waits for the lock.
"""

from __future__ import annotations

import fcntl
import sys


def flock_exclusive(fd: int) -> None:
    """Take the exclusive `flock` on `fd`, however long it takes: return holding it, or raise
    without it."""
    hub = _gevent_hub()
    if hub is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    result = hub.threadpool.spawn(_wait_for, fd)
    try:
        error = result.get()
    except BaseException:
        # Interrupted (the greenlet killed, a gevent.Timeout), maybe while the pool thread still
        # waits in the kernel: wait for it, then let go of what it took. Leaving that to a
        # callback would not do: a flock is the open file's, so the next write of this process
        # would "take" it at once, and the callback would release it under that write.
        while not result.ready():
            try:
                result.wait()
            except BaseException:  # noqa: S112 - a second interruption changes nothing
                continue
        if result.successful() and result.value is None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        raise
    if error is not None:
        raise error


def _wait_for(fd: int) -> OSError | None:
    """In a pool thread: the blocking wait. An error is handed back, not raised there (the hub
    would print it as an error of its own)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        return exc
    return None


def _gevent_hub():
    """The current thread's gevent hub when gevent has patched `threading`, else None."""
    monkey = sys.modules.get("gevent.monkey")  # never imported here: a process without gevent keeps its plain call
    if monkey is None or not monkey.is_module_patched("threading"):
        return None
    import gevent

    hub = gevent.get_hub()
    return None if gevent.getcurrent() is hub else hub  # the hub itself cannot wait for a result
