"""kubenenc's Redis backend: ``redis://`` and ``rediss://`` URLs.

Registered as backend ``redis`` under the ``kubenenc.backends`` entry point; install it with
``pip install "kubenenc[redis]"``. See :mod:`kubenenc_redis.backend` for the URL options and
:mod:`kubenenc_redis.scripts` for the key schema.
"""

from kubenenc_redis.backend import RedisBackend

__all__ = ["RedisBackend"]
