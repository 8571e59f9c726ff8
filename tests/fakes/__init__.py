"""Stand-ins for outside services, run locally by the tests."""
