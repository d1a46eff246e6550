"""The SQL snapshot: models, migrations and the engine."""
