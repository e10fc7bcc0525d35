"""The Celery app of parpy.compare's "celery" backend, for ``celery -A``.

compare starts workers of it itself; to run the backend on a broker and
workers of your own (``compare(..., celery_broker=URL)``, ``python -m parpy
compare --celery-broker URL``), start them where parpy is installed::

    PARPY_CELERY_BROKER=redis://host:6379/0 celery -A parpy.comparison.celery_app worker

The broker (also the result backend) is ``$PARPY_CELERY_BROKER``, by default
redis://127.0.0.1:6379/0; the workers consume the queue "parpy.compare". The
tasks are pickles (they carry the function), so such a worker runs whatever
its broker sends it: give it a broker that only you can reach.
"""

import os

from parpy.comparison._celery import BROKER_VARIABLE, DEFAULT_BROKER, make_app

__all__ = ["app"]

app = make_app(os.environ.get(BROKER_VARIABLE, DEFAULT_BROKER))
