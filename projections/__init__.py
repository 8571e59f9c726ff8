"""Read models: one module per read model, each a Projection and its PostgreSQL View."""
