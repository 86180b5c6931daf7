"""Server fixtures shared by the suite: real LXD daemons and real Keystone + Glance."""

pytest_plugins = [
    "tests.servers.lxd_fixtures",
    "tests.servers.openstack_fixtures",
    "tests.servers.lambda_fixtures",
]
