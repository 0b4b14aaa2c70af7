"""The kubenenc worker: claims invocations from a backend and runs them.

Run it with ``kubenenc worker --app module:attr`` or, in a program, with
:class:`~kubenenc_worker.worker.Worker`.
"""

from kubenenc_worker.worker import Worker

__all__ = ["Worker"]
