"""dejavu: conditional regenerative learning for dense prediction, in PyTorch."""

__version__ = "0.1.0"
