"""Bridges from gradleak to federated-learning frameworks.

* :mod:`gradleak.integrations.flower` — ``AuditStrategy``: wrap a Flower (Message API)
  strategy so the server attacks every client update, round by round, while training runs
  unchanged.
* :mod:`gradleak.integrations.flower_mods` — gradleak defenses as a Flower client mod.
* :mod:`gradleak.integrations.flower_demo` — a 3-client MNIST Flower app, audited.
* :mod:`gradleak.integrations.audit_store` — where audit results go (run folders + index).

Nothing here imports ``flwr`` at import time; a missing ``flwr`` raises
:class:`~gradleak.errors.MissingDependencyError` naming the ``flower`` extra when used.

Example:
    >>> from gradleak.integrations.audit_store import AuditFolderStore
    >>> AuditFolderStore.__name__
    'AuditFolderStore'
"""
