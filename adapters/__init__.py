"""Adapters: settings, the composition root, PostgreSQL/Redis/embedded services, gateways, jobs."""
