"""Toy backends for Lumi's seam tests: a JSON-lines transport, a broker, a thread runtime."""
