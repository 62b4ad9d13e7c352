"""Real external parts the tests run against (a `redis-server`, free loopback ports)."""
