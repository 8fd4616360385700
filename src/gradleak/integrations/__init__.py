"""Bridges from gradleak to federated-learning frameworks (today: :mod:`gradleak.integrations.flower`).

Example:
    >>> from gradleak.integrations.flower.store import AuditFolderStore
    >>> AuditFolderStore.__name__
    'AuditFolderStore'
"""
