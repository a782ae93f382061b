"""Resilience: retries, deadlines, circuit breakers and connect-with-retry for resources."""
