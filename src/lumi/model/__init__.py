"""The model: services, interfaces, types, errors, call metadata and the event envelope.

Plain values and reflection, no I/O; everything else in Lumi reads it and it imports nothing
else of Lumi.
"""
