"""intmon: health monitoring for the third-party APIs a business depends on."""

__version__ = "0.1.0"
