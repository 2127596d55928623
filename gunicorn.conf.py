"""gunicorn settings, read by `gunicorn 'backend.api_server:create_app()'` from the repository root.

Worker class: gevent. Requests are short; what a worker holds many of at once is open keep-alive
connections (every open dashboard tab polls `/live` once a second; scripts page through the
API). A gevent worker serves each connection as a cheap greenlet (up to `worker_connections`);
a sync worker serves one request at a time, a gthread worker as many as it has `threads`.
gunicorn monkey-patches the worker before it loads the app, so the store's `threading` locks are
greenlet locks, and each worker opens its own store after the fork (`preload_app` stays off: a
store opened in the master would be shared by every worker).

All greenlets of a worker share one OS thread, so a blocking call stops every request of the
worker while it lasts. The journal's writers' lock is a blocking `flock` (the kernel queues the
waiters; nothing polls): under gevent, `JournalLock` waits for it in a thread of the hub's
thread pool (backend/store/gevent_flock.py), and a write waits without holding the lock the
store's reads take, so while another process holds the journal lock the worker's reads still
answer (bench/gevent_lock_bench.py, tests/test_gevent_lock.py). What still blocks the thread is
short on a healthy disk: reading the journal (indexes in memory, one `pread` per record) and the
`fsync` after a write. The store's other cross-process lock (`Store.exclusive`, around queueing
an outbound call) is a `JournalLock` too, and waits the same way.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:  # `gunicorn -c /path/to/gunicorn.conf.py` from another directory
    sys.path.insert(0, _ROOT)

from backend.settings import Settings  # noqa: E402

_settings = Settings.from_env()  # HOST, PORT, TRUST_PROXY from the environment or .env

pythonpath = _ROOT
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "gevent"
worker_connections = 1000
preload_app = False
# A worker reads the whole journal when it starts (a few seconds at a million records).
timeout = 120
graceful_timeout = 30
keepalive = 5

# Access log without query strings (they can hold phone numbers) and without the referer
# (it can hold them too): %(U)s is the path alone.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

# Behind one reverse proxy (TRUST_PROXY=1) the app's ProxyFix reads X-Forwarded-*; otherwise
# gunicorn itself must not honour them either.
forwarded_allow_ips = "127.0.0.1,::1" if _settings.trust_proxy else ""


def post_worker_init(worker):
    """The worker has loaded the app and opened its store: freeze its index out of the garbage
    collector's full collections, as the agent's prewarm does."""
    from backend.backend_agent import freeze_loaded_heap

    freeze_loaded_heap()
