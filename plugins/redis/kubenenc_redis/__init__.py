"""kubenenc's Redis backend: ``redis://`` and ``rediss://`` URLs.

Registered as backend ``redis`` under the ``kubenenc.backends`` entry point; install it with
``pip install "kubenenc[redis]"``. See :mod:`kubenenc_redis.options` for the URL options,
:mod:`kubenenc_redis.keys` for the key schema and :mod:`kubenenc_redis.scripts` for how the
Lua scripts (``lua/*.lua``) are assembled.
"""

from kubenenc_redis.backend import RedisBackend

__all__ = ["RedisBackend"]
