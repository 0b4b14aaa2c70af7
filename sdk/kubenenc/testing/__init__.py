"""The backend conformance suite, shipped with kubenenc so that any backend can be checked.

Run it against a backend by URL (each test needs an empty store: ``{fresh}`` in the URL
becomes a new random token per test, ``{tmp}`` the test's temporary folder)::

    pytest --pyargs kubenenc.testing --backend-url='redis://127.0.0.1:6379/0?prefix=t{fresh}'
    pytest --pyargs kubenenc.testing --backend-url='sqlite:///{tmp}/kubenenc.db'

or from a project's own pytest configuration (``kubenenc_backend_urls``), with
``fixture:NAME`` naming a fixture of that project that gives each test a fresh URL (for a
server the test session starts itself). :mod:`kubenenc.testing.plugin` says how specs are
read; ``docs/plugins.md`` says what the suite checks. :mod:`kubenenc.testing.helpers` holds
the builders the tests use, for a plugin's own tests too.

The test modules here are the contract's executable half: they drive a backend only through
:class:`kubenenc.Backend`, its optional roles and the public SDK, with explicit times. A few
run real workers in threads (:mod:`kubenenc_worker`), which ships in the same distribution.
"""
