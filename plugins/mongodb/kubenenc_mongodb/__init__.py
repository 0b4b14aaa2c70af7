"""The MongoDB backend of kubenenc: ``pip install "kubenenc[mongodb]"``, then use a URL
``mongodb://[user:pass@]host[:port]/dbname?prefix=myapp``.

It works with MongoDB and with servers that speak its protocol without all of its guarantees
(FerretDB): see :mod:`kubenenc_mongodb.layout` for why and how.
"""

from __future__ import annotations

from kubenenc_mongodb.backend import MongoBackend
from kubenenc_mongodb.options import MongoOptions, parse_url

__all__ = ["MongoBackend", "MongoOptions", "parse_url"]
