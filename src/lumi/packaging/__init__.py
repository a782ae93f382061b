"""System services: how a service becomes something you can ship (compatibility checks, and
builds, artifacts, repositories and resolution as they land)."""
