"""Keras 3 backend of lmu (placeholder until the backend lands)."""
