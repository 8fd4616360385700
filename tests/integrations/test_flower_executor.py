"""The audit's bounded executor (issue 18): per-attack and per-round budgets, cancellation, both pools.

Budget tests are structural, not timed: a slow job blocks on an event the test sets only after
the caller got control back, so "the round did not wait for it" is a fact, not a measurement.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from gradleak.core.errors import ConfigError
from gradleak.integrations.flower.executor import AuditExecutor


def _collect():
    outcomes: dict = {}
    return outcomes, lambda job, out: outcomes.__setitem__(job.key, out)


def test_thread_pool_does_not_wait_for_an_attack_over_budget():
    release = threading.Event()

    def job(payload):
        if payload == "slow":
            release.wait(60)
            return "late"
        return payload

    outcomes, record = _collect()
    ex = AuditExecutor(job, workers=2, attack_seconds=0.3, on_outcome=record)
    ex.submit(1, [("fast", "fast"), ("slow", "slow")])
    ex.wait_round(1)
    still_blocked = not release.is_set()
    release.set()
    ex.shutdown()
    assert still_blocked  # the round's wait ended while the slow attack was still running
    assert outcomes["fast"].status == "ok" and outcomes["fast"].result == "fast"
    slow = outcomes["slow"]
    assert slow.status == "timeout" and slow.result is None  # its late answer is discarded
    assert "per-attack budget of 0.3 s" in slow.reason and "cannot be killed" in slow.reason


def test_round_budget_bounds_the_wait_and_cancels_what_never_started():
    release = threading.Event()
    outcomes, record = _collect()
    rounds: list[int] = []
    ex = AuditExecutor(lambda p: release.wait(60), workers=1, round_seconds=0.3, on_outcome=record,
                       on_round=rounds.append)
    ex.submit(1, [("a", None), ("b", None)])
    ex.wait_round(1)
    still_blocked = not release.is_set()
    release.set()
    ex.shutdown()
    assert still_blocked and rounds == [1]
    assert outcomes["a"].status == "timeout" and "round's audit budget (0.3 s)" in outcomes["a"].reason
    assert outcomes["b"].status == "cancelled" and "before a worker was free" in outcomes["b"].reason
    assert "(1 of 1 worker(s) busy)" in outcomes["b"].reason


def test_shutdown_with_cancel_reports_every_job_once():
    started, release = threading.Event(), threading.Event()

    def job(payload):
        started.set()
        return release.wait(60)

    seen: list = []
    ex = AuditExecutor(job, workers=1, on_outcome=lambda j, o: seen.append((j.key, o.status, o.reason)))
    ex.submit(1, [("running", None), ("pending", None)])
    assert started.wait(30)
    ex.shutdown(cancel=True)
    release.set()
    assert sorted(s[:2] for s in seen) == [("pending", "cancelled"), ("running", "cancelled")]
    assert any("stopped while this attack ran" in s[2] for s in seen)
    with pytest.raises(RuntimeError, match="shut down"):
        ex.submit(2, [("late", None)])


def test_process_pool_terminates_an_attack_over_budget():
    outcomes, record = _collect()
    ex = AuditExecutor(time.sleep, pool="process", workers=1, attack_seconds=0.5, on_outcome=record)
    assert ex.ready(timeout=120)
    (pid,) = ex.process_ids
    ex.submit(1, [("sleeper", 600)])
    ex.wait_round(1)
    ex.shutdown()
    out = outcomes["sleeper"]
    assert out.status == "timeout" and "worker process was terminated" in out.reason
    assert not os.path.exists(f"/proc/{pid}")  # killed and reaped, not left running for 600 s


def test_bad_executor_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match="pool must be one of.*workers must be.*attack_seconds must be"):
        AuditExecutor(abs, pool="ray", workers=0, attack_seconds=-1)


def test_process_pool_attacks_a_whole_round_in_one_batched_job_like_one_at_a_time():
    import torch

    from gradleak.core.registry import create_attack
    from gradleak.fl import fedsgd_update
    from gradleak.integrations.flower.attackjob import AttackJob, RoundJob, run_attack, run_job, split_outcome
    from gradleak.models import build_model

    model = build_model("convnet", shape=(1, 8, 8), num_classes=10, seed=0).eval()
    gen = torch.Generator().manual_seed(3)
    updates = [fedsgd_update(model, torch.rand(1, 1, 8, 8, generator=gen), torch.tensor([c]), labels_leak=True)
               for c in (1, 5)]
    attack = create_attack("ig", steps=4, labels="known")
    jobs = [AttackJob(attack, model, model.state_dict(), u, (1, 8, 8), False) for u in updates]
    jobs.append(AttackJob(attack, model, {"bogus": torch.zeros(1)}, updates[0], (1, 8, 8), False))  # bad state
    seen: dict = {}
    ex = AuditExecutor(run_job, pool="process", workers=1, attack_seconds=300,
                       on_outcome=lambda job, out: seen.update(split_outcome(job, out)))
    assert ex.ready(timeout=120)
    ex.submit(1, [((1, "round"), RoundJob(["a", "b", "bad"], jobs))])
    ex.wait_round(1)
    ex.shutdown()
    assert sorted(seen) == ["a", "b", "bad"]
    assert seen["bad"].status == "failed" and "bogus" in seen["bad"].reason  # its own error, the others kept
    for key, job in zip("ab", jobs):  # the spawned worker's batched answer = this process, one at a time
        assert seen[key].status == "ok" and seen[key].result.info["batched"] == 2  # one run_many pass
        assert torch.allclose(seen[key].result.inputs, run_attack(job).inputs, atol=1e-5)
