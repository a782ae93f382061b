"""The runtime services every service gets without writing them: observability (structured
logs, correlation, tracing, metrics) and resilience (deadlines, retries, budgets, breakers,
idempotency, resources). Each is middleware on the call pipeline."""
