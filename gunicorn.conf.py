"""gunicorn settings for Oncelink: gthread workers, sendfile, and logs that never show a token."""

import os

from gunicorn.glogging import Logger

from core.redaction import RedactingFilter

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# gthread: a slow multi-GB download occupies one thread, not the worker, and the
# worker's heartbeat comes from its main thread, so long transfers are not killed.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("ONCELINK_THREADS", "16"))
timeout = 60
graceful_timeout = 30
# sendfile is on unless disabled: gunicorn reads *any* value of its `sendfile` setting,
# even True, as --no-sendfile, so it is deliberately not set here.
accesslog = os.environ.get("ONCELINK_ACCESS_LOG", "-")
errorlog = os.environ.get("ONCELINK_ERROR_LOG", "-")
control_socket_disable = True  # one less thing listening; Oncelink needs no runtime control


class RedactingLogger(Logger):
    """gunicorn's logger with the token filter on both the access and the error log."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.addFilter(RedactingFilter())


logger_class = RedactingLogger
