"""facestra: face verification with Structure-Regularized Attention (StRA) networks."""

__version__ = "0.2.0"
