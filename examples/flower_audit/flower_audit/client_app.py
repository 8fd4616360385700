"""ClientApp: local training on this node's MNIST partition; optional gradleak defenses as a mod.

Each reply names the node's partition (``partition-id`` from its node config). The client's data
goes into the reply only when the SuperNode was started with ``--node-config
"gradleak-share-truth=true"`` (an evaluation run); with ``truth-dir`` set (a local simulation)
clients also write their data to that folder. Either way the server's report can score its
reconstructions.
"""

from gradleak.integrations.flower.demo import build_client_app

app = build_client_app()
