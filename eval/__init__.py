"""Evaluation datasets and harness (`linli eval`)."""
