"""Server-side attacks. Importing this package registers the built-in ones."""

from gradleak.attacks import dlg, idlg, ig  # noqa: F401
from gradleak.attacks.base import Attack, Progress

__all__ = ["Attack", "Progress"]
