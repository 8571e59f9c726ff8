"""The domain: aggregates, their events and errors, value objects and pure policies.

Imports the standard library and ``eventsourcing.domain`` only.
"""
