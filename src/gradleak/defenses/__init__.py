"""Client-side defenses (registered with ``@register_defense``)."""

from gradleak.defenses import (  # noqa: F401  (each module registers its defenses)
    aggregate,
    clip,
    dpsgd,
    mixup,
    noise,
    prune,
    quantize,
    soteria,
)
