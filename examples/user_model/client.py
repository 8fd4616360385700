"""Stand-in for your FL system: train the model a little, then save what a server holds.

Writes into OUT (default runs/user_model/):

* `checkpoint.safetensors` — the global weights the server sent to the client;
* `update.safetensors` — the FedSGD gradient the client sent back for a private batch of
  held-out MNIST digits (the model in eval mode), keyed by parameter name;
* `truth.png` — that private batch, to compare with what the attack recovers.

    python examples/user_model/client.py [OUT] [--batch-size 4] [--epochs 1] [--seed 0]

Then attack it in one command (see examples/user_model/README.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from gradleak.data import sample_batch
from gradleak.data.splits import load_splits
from gradleak.experiment.model_state import train_model
from gradleak.experiment.runfolder import image_grid
from gradleak.experiment.update_io import save_update
from gradleak.experiment.user_model import build_user_model
from gradleak.fl import fedsgd_update

MODEL = str(Path(__file__).with_name("model.py")) + ":build"


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default="runs/user_model")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_splits("mnist", {})
    model = build_user_model(MODEL, shape=train.shape, num_classes=train.num_classes, seed=args.seed)
    train_model(model, train, epochs=args.epochs, seed=args.seed)   # the global model after some rounds
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "checkpoint.safetensors"))
    batch = sample_batch(test, args.batch_size, seed=args.seed)      # the client's private digits
    save_update(fedsgd_update(model, batch.inputs, batch.labels, mode="eval"), out / "update.safetensors")
    image_grid([batch.inputs], min_size=112).save(out / "truth.png")
    print(f"wrote {out}/checkpoint.safetensors, {out}/update.safetensors and {out}/truth.png "
          f"(true labels {batch.labels.tolist()})")
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
