"""facestra: face verification with Structure-Regularized Attention (StRA) networks."""

__version__ = "0.1.0"
