pytest_plugins = ["tests.servers.lxd_fixtures"]
