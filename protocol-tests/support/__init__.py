"""Helpers shared by the pytest suite and the measurement script."""
