"""Flower: audit every client update of a real federation, and gradleak defenses as a client mod.

* :mod:`~gradleak.integrations.flower.strategy` — ``AuditStrategy`` wraps a Message-API strategy;
* :mod:`~gradleak.integrations.flower.executor` — the bounded pool the attacks run on (budgets);
* :mod:`~gradleak.integrations.flower.replies` — a train reply read as a client update;
* :mod:`~gradleak.integrations.flower.applicability` — what is refused before round 1;
* :mod:`~gradleak.integrations.flower.progress` — live progress through Flower's logger;
* :mod:`~gradleak.integrations.flower.clientinfo` — what a client tells the audit (partition, truth);
* :mod:`~gradleak.integrations.flower.store`, ``auditreport`` — where results go, the report;
* :mod:`~gradleak.integrations.flower.mods` — ``defense_mod``: gradleak defenses on the client;
* :mod:`~gradleak.integrations.flower.demo` (``democonfig``) — a 3-client MNIST Flower app, audited.

Nothing here imports ``flwr`` at import time; a missing ``flwr`` raises
:class:`~gradleak.core.errors.MissingDependencyError` naming the ``flower`` extra when used.
"""

from gradleak.integrations.flower.clientinfo import annotate_reply
from gradleak.integrations.flower.strategy import AuditStrategy, local_training_from_config, require_flwr

__all__ = ["AuditStrategy", "annotate_reply", "local_training_from_config", "require_flwr"]
