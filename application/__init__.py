"""The service layer: the eventsourcing Application, its commands, and the ports it needs."""
