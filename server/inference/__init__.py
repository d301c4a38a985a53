"""Inference: one model per process, one thread that uses it, a bounded queue and a batcher."""
