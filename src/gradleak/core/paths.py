"""Where gradleak caches what it builds (datasets, trained models): ``$GRADLEAK_CACHE``.

Example:
    >>> import os
    >>> os.environ["GRADLEAK_CACHE"] = "/tmp/gl-cache-doc"
    >>> str(cache_dir())
    '/tmp/gl-cache-doc'
    >>> del os.environ["GRADLEAK_CACHE"]
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$GRADLEAK_CACHE`` or ``~/.cache/gradleak``."""
    env = os.environ.get("GRADLEAK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gradleak"
