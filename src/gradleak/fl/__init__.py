"""Client-side simulation: FedSGD gradients and FedAvg weight deltas."""

from gradleak.fl.client import fedavg_update, fedsgd_update, local_sgd

__all__ = ["fedavg_update", "fedsgd_update", "local_sgd"]
