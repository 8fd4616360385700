"""ClientApp: local SGD on this node's MNIST partition; optional gradleak defenses as a mod.

With ``truth-dir`` set (simulation only) each client also records its data there, so the
server's audit report can score its reconstructions.
"""

from gradleak.integrations.flower.demo import build_client_app

app = build_client_app()
