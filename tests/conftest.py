pytest_plugins = ["postveil.harness.pytest_plugin"]
