"""Database layer: models, engine set-up, migrations check and the queries the API needs."""
