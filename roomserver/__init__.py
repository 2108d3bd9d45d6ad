"""roomserver: a self-hosted server for live product-review rooms."""

__version__ = "0.1.0"
