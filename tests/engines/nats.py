"""A real NATS JetStream server for the tests (placeholder until the NATS broker lands)."""
