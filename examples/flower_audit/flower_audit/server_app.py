"""ServerApp: FedAvg over every client, wrapped in gradleak's AuditStrategy.

The settings come from ``[tool.flwr.app.config]`` in ``pyproject.toml`` (override them with
``flwr run . --run-config "attack='ig' attack-steps=200"``). The audit folder is ``out-dir``.
"""

from gradleak.integrations.flower.demo import build_server_app

app = build_server_app()
