"""Helpers for the tests of the database modules: their settings in a
PackratEnv, and the engine/server fixtures that run a test on both real
servers (MariaDB and PostgreSQL, tests/servers). A test file imports the
fixtures by name to use them."""
import pytest


def db_settings(penv, engine, server, targets, **more):
    """Set ``penv`` to back up ``targets`` of ``server`` with the ``engine``
    module ("mysql" or "postgresql"), plus ``more`` settings; not written."""
    prefix = "MYSQL" if engine == "mysql" else "POSTGRESQL"
    penv.settings.update({
        "BACKUP_MODULES": [engine],
        prefix + "_TARGETS": targets,
        prefix + "_USER": server.user,
        prefix + "_PASS": server.password,
        prefix + "_HOST": "127.0.0.1",
        prefix + "_PORT": server.port,
    })
    penv.settings.update(more)


def configure(penv, engine, server, targets, **more):
    """db_settings, and the config written."""
    db_settings(penv, engine, server, targets, **more)
    penv.write()


class Settings(dict):
    """The settings a module reads, and where they came from (pypackrat.config.Settings' API)."""
    origin = {}
    path = "/etc/packrat/packrat.conf"

    def where(self, name, role=None):
        return self.path


def server_for(request, engine):
    """The session's real server of ``engine``."""
    return request.getfixturevalue("mariadb_server" if engine == "mysql" else "postgres_server")


@pytest.fixture(params=["mysql", "postgresql"])
def engine(request):
    return request.param


@pytest.fixture
def server(engine, request):
    return server_for(request, engine)
