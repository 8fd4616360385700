"""Server-side attacks. Importing this package registers the built-in ones."""

from gradleak.attacks import (  # noqa: F401  (each module registers its attack)
    dlg,
    fedavg_unrolled,
    geng,
    ggl,
    gifd,
    gradinversion,
    idlg,
    ig,
    spear,
)
from gradleak.attacks.base import Attack, Progress

__all__ = ["Attack", "Progress"]
