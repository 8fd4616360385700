"""Client-side defenses (registered with ``@register_defense``)."""
