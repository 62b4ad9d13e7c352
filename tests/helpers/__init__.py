"""Real external parts the tests run against (a `redis-server`, coturn, free loopback ports);
the process plumbing itself is bench.processes'."""
