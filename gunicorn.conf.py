"""gunicorn settings for Oncelink: gevent workers, sendfile, and logs that never show a token."""

import gc
import os
import resource
import signal
from pathlib import Path

from gunicorn.glogging import Logger

from core.log_lines import JsonLines, wants_json
from core.redaction import RedactingFilter

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# gevent: every connection is a greenlet, so a thousand slow downloads wait on their sockets
# together while pages and the API keep answering; with gthread each download held one of a
# handful of threads until its last byte, and the next ones (pages included) queued behind.
# The transfers' own send loop (non-blocking sendfile, poll, sleep) is cooperative under it.
worker_class = os.environ.get("ONCELINK_WORKER_CLASS", "gevent")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("ONCELINK_THREADS", "16"))  # gthread only
worker_connections = int(os.environ.get("ONCELINK_WORKER_CONNECTIONS", "2000"))  # per worker
timeout = 60
graceful_timeout = 30
# sendfile is on unless disabled: gunicorn reads *any* value of its `sendfile` setting,
# even True, as --no-sendfile, so it is deliberately not set here.


def raise_open_files_limit(wanted: int) -> None:
    """Each download holds a socket and a file: lift the soft limit (often 1,024) toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


raise_open_files_limit(2 * worker_connections + 256)
accesslog = os.environ.get("ONCELINK_ACCESS_LOG", "-")
errorlog = os.environ.get("ONCELINK_ERROR_LOG", "-")
control_socket_disable = True  # one less thing listening; Oncelink needs no runtime control


class RedactingLogger(Logger):
    """gunicorn's logger with the token redaction on both the access and the error log: by a
    filter for text lines, by the formatter for JSON ones (ONCELINK_LOG_FORMAT=json), which needs
    the access line's fields that the filter would drop with the arguments it rewrites."""

    def setup(self, cfg):
        super().setup(cfg)
        json_lines = wants_json(os.environ.get("ONCELINK_LOG_FORMAT"))
        for log in (self.error_log, self.access_log):
            if not json_lines:
                log.addFilter(RedactingFilter())
                continue
            for handler in log.handlers:
                handler.setFormatter(JsonLines())


logger_class = RedactingLogger


def post_fork(server, worker):
    """A worker told to stop while it boots stops. Until its own handlers are set, after gevent has
    patched the standard library (a few hundred ms), a new worker holds the arbiter's, which queue
    the signal in the worker's copy of the arbiter, where nothing reads it: a stop or a restart
    right after a start waited graceful_timeout for workers that had never served, then killed them."""
    for stop in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(stop, stopped_while_booting)


def stopped_while_booting(signum, frame):
    os._exit(0)  # nothing served yet, so nothing to finish


def post_worker_init(worker):
    """Each worker sends the queued notifications from a thread of its own (core/notifying.py), and
    compiles the templates before its first request rather than in it.

    What the worker loaded to start (the app, boto3's and botocore's modules and, where a storage is
    an S3 bucket, S3's service model: up to 150,000 objects) lives as long as it does, so the
    garbage collector is told to leave it out of its passes: a full pass over it took 100 ms here,
    now and then in the middle of a request, and S3's model loaded later added 20 ms to each."""
    from app import compile_templates
    from core.storages import uses_s3  # imported once gevent has patched ssl, as the app is
    from storage.s3 import load_service_model

    worker.wsgi.extensions["oncelink_notify"].start()
    compile_templates(worker.wsgi)
    if uses_s3(worker.wsgi.config["DATABASE"]):
        load_service_model()  # some 15 MB: not where no storage needs it
    gc.freeze()


def metrics_folder() -> Path:
    """Where the workers keep their metrics (core/metrics.py): in the data dir, unless
    PROMETHEUS_MULTIPROC_DIR says otherwise."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    data_dir = Path(os.environ.get("ONCELINK_DATA_DIR", "instance")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return data_dir / "metrics"


def on_starting(server):
    """With metrics on, before any worker exists: an empty folder for their values (one left by
    the last run would add its counts to this one's), named where every worker will look."""
    if not os.environ.get("ONCELINK_METRICS_TOKEN"):
        return
    folder = metrics_folder()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for values in folder.glob("*.db"):
        values.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def child_exit(server, worker):
    """A worker that exited (or was killed) no longer counts in the gauges of live workers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """A worker that ends closes its database connections itself: a PostgreSQL pool left to the
    garbage collector would try to stop its threads while gevent's hub is already going."""
    from db import close_pools

    close_pools()
