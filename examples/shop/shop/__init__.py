"""The example shop app."""
