"""gunicorn's settings for Timeveil; gunicorn reads this file from its working directory (the repository).

`make run`, bench/production.py and the integration tests start gunicorn here, and so should a deployment:
the command line names only the bind address, workers and threads.
"""

# SIGTERM: the server stops accepting, finishes every request in flight, then exits. This is how long a
# request may still take: a 10 MiB upload from a slow phone link, well past the usual request.
graceful_timeout = 60
# A worker silent this long is killed and restarted (its in-flight requests are lost): the longest request.
timeout = 120
# Idle keep-alive connections are held longer than a load balancer's own idle timeout (60 s on the common
# ones): the balancer, not gunicorn, closes a quiet connection, so it never sends a request down a socket
# gunicorn is closing at that moment (the reset such a race causes).
keepalive = 75
# Connections waiting to be accepted during a burst, rather than refused.
backlog = 2048
