"""FakeScope HTTP service: a Litestar app over the forensic core, with a SQL cache."""
