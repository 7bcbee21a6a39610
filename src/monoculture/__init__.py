"""monoculture: measure how alike generative AI models have become."""

__version__ = "0.1.0"
