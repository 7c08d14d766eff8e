pytest_plugins = ["freshet.devstack.testing"]
