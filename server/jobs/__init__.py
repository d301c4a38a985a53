"""The SQL job queue that lets API processes hand work to GPU workers on other machines."""
