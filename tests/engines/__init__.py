"""Real brokers started by the tests on loopback (one module per engine, session fixtures)."""
