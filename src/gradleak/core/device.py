"""Where tensors live: device names, availability checks, determinism flags, moving updates.

A device is named ``auto`` (CUDA when present, else Apple's MPS, else the CPU), ``cpu``,
``cuda``, ``cuda:N`` or ``mps``. Asking for one that this machine does not have is a
:class:`DeviceError` (a one-line :class:`~gradleak.core.errors.GradleakError`; exit status 2 in
the CLI), never a fallback.

Random numbers are always drawn from seeded CPU generators and then moved, so the same seed
gives the same starting images, noise and shuffles on every device. What runs on the device is
deterministic on the CPU; on CUDA :func:`resolve_device` switches on PyTorch's deterministic
algorithms (cuDNN deterministic, no cuDNN benchmarking, ``CUBLAS_WORKSPACE_CONFIG``), so the same
seed repeats the same numbers on the same GPU and software. Not bit-identical, and not made so:
results *across* devices (a GPU's convolution and reduction orders differ from the CPU's; they
agree to float tolerance), across GPU models or driver/library versions, and on MPS, which has
no deterministic mode.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> check_device_spec("cuda:1")
    'cuda:1'
    >>> try:
    ...     check_device_spec("gpu")
    ... except DeviceError as err:
    ...     print(err)
    unknown device 'gpu'; use auto, cpu, cuda, cuda:N or mps
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gradleak.core.errors import ConfigError

if TYPE_CHECKING:  # torch is imported only when a device is actually resolved
    import torch

    from gradleak.core.types import ClientUpdate, GroundTruth, Reconstruction

DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps (default auto: CUDA, else MPS, else the CPU)"
"""The help text of every ``--device`` option."""

_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(ConfigError):
    """A device name that is malformed or not available on this machine."""


def check_device_spec(spec: str) -> str:
    """``spec`` if it is a well-formed device name, else :class:`DeviceError` (no torch import)."""
    text = str(spec).strip().lower()
    if not _SPEC.match(text):
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return text


def resolve_device(spec: Any = "auto") -> torch.device:
    """The :class:`torch.device` named by ``spec`` (a name, a ``torch.device`` or ``None`` = auto).

    Raises:
        DeviceError: a malformed name, or a device this machine does not have.
    """
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    text = check_device_spec("auto" if spec is None else spec)
    if text == "auto":
        if torch.cuda.is_available():
            text = "cuda"
        elif _mps_available():
            text = "mps"
        else:
            return torch.device("cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {text!r} was asked for, but this machine has no CUDA GPU that PyTorch "
                              f"can use (torch {torch.__version__}); use --device cpu or auto")
        index = int(text.split(":")[1]) if ":" in text else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {text!r} was asked for, but this machine has {torch.cuda.device_count()} "
                              f"CUDA device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})")
        deterministic_cuda()
        return torch.device("cuda", index)
    if text == "mps" and not _mps_available():
        raise DeviceError("device 'mps' was asked for, but Apple's Metal backend is not available here; "
                          "use --device cpu or auto")
    return torch.device(text)


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def deterministic_cuda() -> None:
    """Make CUDA kernels repeatable: deterministic cuDNN and cuBLAS, no benchmarking (process-wide)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model without tensors."""
    import torch

    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def update_to(update: ClientUpdate, device: torch.device) -> ClientUpdate:
    """A copy of ``update`` whose tensors, buffers and labels live on ``device`` (itself when they do)."""
    tensors = list(update.tensors.values()) + list((update.buffers or {}).values())
    if update.labels is not None:
        tensors.append(update.labels)
    if all(t.device == device for t in tensors):
        return update
    return replace(update, tensors={k: v.to(device) for k, v in update.tensors.items()},
                   buffers=None if update.buffers is None else {k: v.to(device) for k, v in update.buffers.items()},
                   labels=None if update.labels is None else update.labels.to(device))


def truth_to(truth: GroundTruth, device: torch.device) -> GroundTruth:
    """``truth`` with its inputs and labels on ``device``."""
    if truth.inputs.device == device and truth.labels.device == device:
        return truth
    return type(truth)(truth.inputs.to(device), truth.labels.to(device))


def reconstruction_to_cpu(rec: Reconstruction) -> Reconstruction:
    """``rec`` with its images and labels on the CPU (where results are returned)."""
    labels = None if rec.labels is None else rec.labels.detach().cpu()
    return replace(rec, inputs=rec.inputs.detach().cpu(), labels=labels)
