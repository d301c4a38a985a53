"""POST /v1/analyze and GET /v1/analyses/{sha256}."""
