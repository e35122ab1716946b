"""PyTorch backend of lmu (placeholder until the backend lands)."""
