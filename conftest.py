"""Root test configuration: the fixture plugins of every tier.

At the root so that they are there however the session is started: ``pytest``,
``pytest tests/unit``, or ``pytest --pyargs kubenenc.testing`` (the conformance suite, whose
``fixture:`` backend specs in pyproject.toml name the server fixtures of ``tests/servers``).
"""

pytest_plugins = [
    "pytester",
    "tests.servers.embedded",
    "tests.cluster.fixtures",
    "tests.servers.redis",
    "tests.servers.mongodb",
    "tests.servers.rediscluster",
]
