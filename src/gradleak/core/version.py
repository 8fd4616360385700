"""The package version (kept here so that any layer may record it without importing the facade).

Example:
    >>> from gradleak.core.version import __version__
    >>> __version__.count(".")
    2
"""

__version__ = "0.1.0"
