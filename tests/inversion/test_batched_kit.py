"""The batched gradient-matching kit: Adam and L-BFGS against torch.optim, distances, best iterates."""

from __future__ import annotations

import pytest
import torch

from gradleak.core.errors import ConfigError
from gradleak.core.registry import create_attack
from gradleak.fl import fedsgd_update
from gradleak.inversion import losses
from gradleak.inversion.gradients import TrialGradients
from gradleak.inversion.lbfgs import Tolerances, lbfgs_minimise
from gradleak.inversion.losses import GradientDistance, cosine_distance, l2_distance
from gradleak.inversion.optimize import lr_schedule, optimise_inputs
from gradleak.inversion.schedules import step_decay
from gradleak.models import build_model


@pytest.mark.parametrize("signed", [True, False])
def test_adam_loop_is_torch_adam_with_multistep_decay_bit_for_bit(signed):
    gen = torch.Generator().manual_seed(0)
    a, x0 = torch.randn(3, 16, 16, generator=gen), torch.rand(3, 16, generator=gen)

    def loss(x):
        return torch.einsum("rij,rj->ri", a, x).sin().pow(2).sum(1)

    out = optimise_inputs(loss, x0, steps=40, lr=0.1, signed=signed)
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.1)
    sched = step_decay(opt, 40)
    for _ in range(40):
        opt.zero_grad()
        loss(x).sum().backward()
        if signed:
            x.grad.sign_()
        opt.step()
        sched.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    assert torch.equal(out.last, x.detach())
    assert lr_schedule(0.1, 40)[-1] == opt.param_groups[0]["lr"]


def test_optimise_inputs_returns_the_lowest_loss_iterate_not_the_last():
    # unsigned Adam with a large constant step overshoots a narrow well: the last iterate is worse
    def loss(x):
        return (x - 0.5).pow(2).flatten(1).sum(1)

    x0 = torch.tensor([[0.45], [0.0]])
    out = optimise_inputs(loss, x0, steps=15, lr=0.3, signed=False, decay=False, box=None)
    last, kept = loss(out.last), loss(out.x)
    assert float(last[0]) > 2 * float(kept[0])  # row 0 passed its best point and was thrown off again
    for r in range(2):
        assert float(kept[r]) == pytest.approx(min(out.history[r] + [float(last[r])]))
        assert float(out.loss[r]) == pytest.approx(float(kept[r]))
    assert out.best_row() == int(kept.argmin())


def _rows():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 12, 12, generator=gen, dtype=torch.float64)
    q = q @ q.transpose(1, 2) / 12 + torch.eye(12, dtype=torch.float64)
    b = torch.randn(3, 12, generator=gen, dtype=torch.float64)

    def row_loss(z, i):
        return 0.5 * z @ q[i] @ z - b[i] @ z + 0.05 * (z ** 4).sum() + 0.1 * torch.cos(z).sum()

    z0 = 3 * torch.rand(3, 12, generator=gen, dtype=torch.float64)
    return row_loss, z0


@pytest.mark.parametrize("history_size, max_iter, steps", [(100, 20, 6), (3, 5, 12)])
def test_batched_lbfgs_equals_torch_lbfgs_row_by_row(history_size, max_iter, steps):
    row_loss, z0 = _rows()
    out = lbfgs_minimise(lambda z: torch.stack([row_loss(z[i], i) for i in range(3)]), z0, steps=steps,
                         max_iter=max_iter, history_size=history_size, tol=Tolerances(1e-9, 1e-12, -float("inf")))
    for i in range(3):
        x = z0[i].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], lr=1, max_iter=max_iter, history_size=history_size, tolerance_grad=1e-9,
                                tolerance_change=1e-12)

        def closure(x=x, opt=opt, i=i):
            opt.zero_grad()
            value = row_loss(x, i)
            value.backward()
            return value

        history = [float(opt.step(closure).detach()) for _ in range(steps)]
        assert out.history[i] == pytest.approx(history, abs=1e-10)
        assert out.evaluations[i] == opt.state[opt._params[0]]["func_evals"]
        assert float(out.loss[i]) == pytest.approx(float(row_loss(x.detach(), i)), abs=1e-10)


def test_lbfgs_loss_floor_stops_a_row_for_good():
    row_loss, z0 = _rows()

    def loss(z):
        return torch.stack([row_loss(z[i], i) for i in range(3)]) + 10.0  # positive: the floor can be met

    free = lbfgs_minimise(loss, z0, steps=6, tol=Tolerances(1e-9, 1e-12))
    floor = float(free.loss[0]) + 0.5  # row 0 gets below this during the run
    stopped = lbfgs_minimise(loss, z0, steps=6, tol=Tolerances(1e-9, 1e-12, floor))
    assert len(stopped.history[0]) < len(free.history[0]) and stopped.evaluations[0] < free.evaluations[0]
    assert float(stopped.loss[0]) <= floor


def test_dlg_exposes_its_tolerances(digits):
    assert create_attack("dlg", tolerance_grad=1e-7, tolerance_change=1e-9, loss_floor=1e-6).loss_floor == 1e-6
    with pytest.raises(ConfigError, match="tolerance_grad"):
        create_attack("idlg", tolerance_grad=-1.0)
    model = build_model("lenet", shape=(1, 8, 8), num_classes=10, seed=0)
    update = fedsgd_update(model, digits.inputs[:1], digits.labels[:1], labels_leak=True)
    tight = create_attack("idlg", steps=4, labels="known").run(model, update, shape=(1, 8, 8))
    loose = create_attack("idlg", steps=4, labels="known", tolerance_change=1e-3).run(model, update, shape=(1, 8, 8))
    assert loose.info["evaluations"] < tight.info["evaluations"]  # torch-like tolerances stop sooner


def test_gradient_distance_matches_the_per_tensor_distances_client_by_client():
    gen = torch.Generator().manual_seed(1)
    targets = [[torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)] for _ in range(2)]
    trial = [torch.randn(6, 4, 3, generator=gen), torch.randn(6, 5, generator=gen)]  # 2 clients x 3 rows
    for kind, ref in (("cosine", cosine_distance), ("l2", l2_distance)):
        got = GradientDistance(targets, kind)(trial)
        want = torch.cat([ref([t[3 * i:3 * i + 3] for t in trial], targets[i]) for i in range(2)])
        assert torch.allclose(got, want, atol=1e-5), kind


def test_gradient_distance_reads_tensors_one_by_one_or_concatenated_alike(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    targets = [[torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)] for _ in range(2)]
    trial = [torch.randn(6, 4, 3, generator=gen, requires_grad=True), torch.randn(6, 5, generator=gen,
                                                                                   requires_grad=True)]
    out = {}
    for small in (0, 1 << 20):  # every call per tensor / every call concatenated
        monkeypatch.setattr(losses, "SMALL", small)
        for kind in ("cosine", "l2"):
            d = GradientDistance(targets, kind)(trial)
            out[small, kind] = (d, torch.autograd.grad(d.pow(2).sum(), trial))
    for kind in ("cosine", "l2"):
        (a, ga), (b, gb) = out[0, kind], out[1 << 20, kind]
        assert torch.allclose(a, b, atol=1e-6) and all(torch.allclose(u, v, atol=1e-5) for u, v in zip(ga, gb))


def test_trial_gradients_leave_parameter_grads_alone_and_rows_equal_singles():
    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0)
    trial = TrialGradients(model)
    x = torch.rand(3, 2, 1, 8, 8, requires_grad=True)
    y = torch.randint(0, 10, (3, 2))
    rows = trial(x, y)
    torch.autograd.grad(sum(g.pow(2).sum() for g in rows), [x])
    assert all(p.grad is None for p in model.parameters())
    for r in range(3):
        for a, b in zip(rows, trial(x[r:r + 1], y[r:r + 1])):
            assert torch.allclose(a[r], b[0], atol=1e-6)


@pytest.mark.parametrize("name, options", [("convnet", {}), ("lenet", {}), ("resnet20", {}),
                                           ("resnet20", {"norm": "gn"}), ("inplace", {}), ("oddconv", {})])
def test_per_sample_gradients_equal_parameter_copies(name, options):
    torch.manual_seed(0)
    if name == "inplace":  # an in-place ReLU after a kept output
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(27, 6), torch.nn.ReLU(inplace=True),
                                    torch.nn.Linear(6, 10))
    elif name == "oddconv":  # rectangular kernel, uneven stride and padding, dilation, no bias
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(2, 1), dilation=2,
                                                    bias=False), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.LazyLinear(10))
        model(torch.rand(1, 3, 3, 3))
    else:
        model = build_model(name, shape=(3, 3, 3), num_classes=10, seed=0, **options)
    model = model.eval().double()
    trial = TrialGradients(model)
    assert trial.fast is not None
    x = torch.rand(3, 2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    for y in (torch.randint(0, 10, (3, 2)), torch.softmax(torch.randn(3, 2, 10, dtype=torch.float64), -1)):
        fast, slow = trial.rows(x, y), trial.copies(x, y)
        assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(fast, slow))
        (ga,) = torch.autograd.grad(sum(g.pow(2).sum() for g in fast), [x])
        (gb,) = torch.autograd.grad(sum(g.pow(2).sum() for g in slow), [x])
        assert torch.allclose(ga, gb, atol=1e-10)
    # BatchNorm in train mode mixes a batch's samples: that model loops over rows instead
    assert (TrialGradients(model.train()).fast is None) == (name == "resnet20" and not options)
