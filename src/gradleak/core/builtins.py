"""Every built-in registry entry, declared in one place as ``name -> "module:attribute"``.

The registries in :mod:`gradleak.core.registry` read this table; a module is imported only when
one of its entries is first used, so ``gradleak list`` knows every name without importing torch
models or attacks, and a module that fails to import fails alone, every time it is asked for,
leaving every other entry usable. Adding a built-in means adding its line here.

Example:
    >>> ATTACKS["ig"]
    'gradleak.attacks.ig:InvertingGradients'
    >>> sorted(BUILTINS)
    ['attack', 'dataset', 'defense', 'label method', 'model']
"""

from __future__ import annotations

ATTACKS = {
    "dlg": "gradleak.attacks.dlg:DLG",
    "idlg": "gradleak.attacks.idlg:IDLG",
    "ig": "gradleak.attacks.ig:InvertingGradients",
    "geng": "gradleak.attacks.geng:Geng",
    "gradinversion": "gradleak.attacks.gradinversion:GradInversion",
    "fedavg-unrolled": "gradleak.attacks.fedavg_unrolled:FedAvgUnrolled",
    "spear": "gradleak.attacks.spear.attack:Spear",
    "ggl": "gradleak.attacks.ggl.attack:GGL",
    "gifd": "gradleak.attacks.gifd.attack:GIFD",
}

DEFENSES = {
    "noise": "gradleak.defenses.noise:GaussianNoise",
    "clip": "gradleak.defenses.clip:Clip",
    "dpsgd": "gradleak.defenses.dpsgd:DPSGD",
    "prune": "gradleak.defenses.prune:Prune",
    "topk": "gradleak.defenses.prune:TopK",
    "quantize": "gradleak.defenses.quantize:Quantize",
    "sign": "gradleak.defenses.quantize:Sign",
    "soteria": "gradleak.defenses.soteria:Soteria",
    "mixup": "gradleak.defenses.mixup:MixUp",
    "aggregate": "gradleak.defenses.aggregate:SecureAggregation",
}

DATASETS = {
    "mnist": "gradleak.data.embedded:mnist",
    "digits": "gradleak.data.embedded:digits",
    "natural32": "gradleak.data.natural:natural32",
    "faces": "gradleak.data.faces:faces",
    "cifar10": "gradleak.data.files:cifar10",
    "cifar100": "gradleak.data.files:cifar100",
    "mnist-idx": "gradleak.data.files:mnist_idx",
    "fashion-mnist": "gradleak.data.files:fashion_mnist",
    "imagefolder": "gradleak.data.files:image_folder",
}

MODELS = {
    "mlp": "gradleak.models.zoo:mlp",
    "lenet": "gradleak.models.zoo:lenet",
    "convnet": "gradleak.models.zoo:convnet",
    "resnet20": "gradleak.models.resnet:resnet20",
    "resnet18": "gradleak.models.resnet:resnet18",
}

LABEL_METHODS = {
    "idlg": "gradleak.labels.idlg:restore_idlg",
    "geng": "gradleak.labels.geng:restore_geng",
    "bias": "gradleak.labels.geng:restore_bias",
    "dimitrov": "gradleak.labels.geng:restore_dimitrov",
    "ilrg": "gradleak.labels.ilrg:restore_ilrg",
    "lsq": "gradleak.labels.lsq:restore_lsq",
    "yin": "gradleak.labels.yin_llg:restore_yin",
    "llg": "gradleak.labels.yin_llg:restore_llg",
}

BUILTINS = {"attack": ATTACKS, "defense": DEFENSES, "dataset": DATASETS, "model": MODELS,
            "label method": LABEL_METHODS}
"""Registry kind -> its built-in entries."""
