"""Flower: audit every client update of a real federation, and gradleak defenses as a client mod.

* :mod:`~gradleak.integrations.flower.strategy` — ``AuditStrategy`` wraps a Message-API strategy;
* :mod:`~gradleak.integrations.flower.mods` — ``defense_mod``: gradleak defenses on the client;
* :mod:`~gradleak.integrations.flower.store` — where audit results go (run folders + index);
* :mod:`~gradleak.integrations.flower.demo` — a 3-client MNIST Flower app, audited.

Nothing here imports ``flwr`` at import time; a missing ``flwr`` raises
:class:`~gradleak.core.errors.MissingDependencyError` naming the ``flower`` extra when used.
"""

from gradleak.integrations.flower.strategy import AuditStrategy, local_training_from_config, require_flwr

__all__ = ["AuditStrategy", "local_training_from_config", "require_flwr"]
