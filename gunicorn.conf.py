"""gunicorn settings, read by `gunicorn 'backend.api_server:create_app()'` from the repository root.

Worker class: gevent. The dashboard keeps long-lived server-sent-event connections open; a
gevent worker holds each one as a cheap greenlet (up to `worker_connections`), where a sync
worker would be blocked by one and a gthread worker would give each its own OS thread. The
store works under it: gunicorn monkey-patches the worker before it loads the app, so the
store's `threading.RLock` and the journal file lock's polling sleep become cooperative, and
each worker opens its own store after the fork (`preload_app` stays off: a store opened in the
master would be shared by every worker). Requests are short and CPU-light (indexes in memory,
one `pread` per record), so blocking file reads do not starve the loop.
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
