"""POST /v1/ask: questions about an analysed image, answered by the model and cached."""
