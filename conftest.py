"""pytest's first stop for every test of the repository (``tests/`` and the client SDK's
``clients/python/tests/``): the fixtures both share are plugins in ``tests/support``, registered here once, so
no conftest or test module imports another's fixtures. ``tests.support.fixtures`` comes first: it isolates
the environment before anything reads a setting."""

pytest_plugins = ["tests.support.fixtures", "tests.support.server_fixtures"]
