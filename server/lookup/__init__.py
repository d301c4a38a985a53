"""POST /v1/lookup: cached verdicts for many images at once (never runs the model)."""
