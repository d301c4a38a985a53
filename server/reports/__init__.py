"""POST /v1/reports: a user says a verdict is wrong; the image enters the review queue."""
