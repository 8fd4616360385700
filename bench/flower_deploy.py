"""A real Flower 1.41 deployment on this machine, audited: one SuperLink, two SuperNodes, `flwr run`.

What the README's "Audit a real Flower deployment" section says, run end to end on 127.0.0.1:

1. a fresh ``FLWR_HOME`` whose ``config.toml`` holds the connection entry for the SuperLink;
2. ``flower-superlink --insecure`` on one port (Fleet, Control and Runtime APIs share it);
3. two ``flower-supernode`` processes pointing at that port, each with its own ``--port`` for the
   ClientApp and a ``--node-config`` with its partition (and, because this is an evaluation
   run, ``gradleak-share-truth=true`` so the audit can score what it reconstructs);
4. ``flwr run examples/flower_audit <connection> --stream`` for two rounds with
   ``num-clients`` = the number of SuperNodes;
5. every process this script started is stopped by its process id (SuperNodes, SuperLink, and
   the ``flower-superexec`` helpers they spawned), never by name.

It writes ``docs/results/flower_deploy.md``: the command, versions, settings, the audit's
per-round progress lines as ``flwr run --stream`` showed them, and the report's per-client and
per-round tables. Run: ``python bench/flower_deploy.py`` (a few minutes; needs gradleak[flower]).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "flower_audit"
OUT = ROOT / "docs" / "results" / "flower_deploy.md"
CONNECTION = "gradleak-local"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Wait until something listens on 127.0.0.1:``port`` (or ``proc`` died)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds:.0f} s")


def helpers_of(pids: list[int]) -> dict[int, str]:
    """Processes whose parent is one of ``pids`` or whose command line says ``--parent-pid P`` for one of them."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [c.decode(errors="replace") for c in (entry / "cmdline").read_bytes().split(b"\0") if c]
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        marked = any(a == "--parent-pid" and i + 1 < len(args) and args[i + 1].isdigit() and int(args[i + 1]) in pids
                     for i, a in enumerate(args))
        if (marked or ppid in pids) and args:
            program = args[1] if Path(args[0]).name.startswith("python") and len(args) > 1 else args[0]
            found[int(entry.name)] = Path(program).name
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop(procs: list[subprocess.Popen], log: list[str]) -> bool:
    """SIGTERM each process we started (then the helpers they spawned), by process id; SIGKILL after 15 s.

    Returns whether every one of them is gone afterwards.
    """
    pids = [p.pid for p in procs]
    family = helpers_of(pids)
    family.update(helpers_of(list(family)))
    for proc in reversed(procs):  # SuperNodes first, the SuperLink last
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            log.append(f"SIGTERM to pid {proc.pid} ({Path(proc.args[0]).name})")
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log.append(f"SIGKILL to pid {proc.pid} after 15 s")
    for pid, what in sorted(family.items()):
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            log.append(f"SIGTERM to helper pid {pid} ({what})")
        else:
            log.append(f"helper pid {pid} ({what}) had already exited")
    end = time.monotonic() + 15
    while time.monotonic() < end and any(alive(pid) for pid in family):
        time.sleep(0.5)
    left = [pid for pid in family if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
        log.append(f"SIGKILL to helper pid {pid}")
    gone = not any(alive(p) for p in [*pids, *family])
    log.append(f"all {len(pids) + len(family)} processes gone: {gone}")
    return gone


def run(args: argparse.Namespace) -> str:
    """Start, run, stop; return the results Markdown."""
    bin_dir = Path(sys.executable).parent
    home = Path(tempfile.mkdtemp(prefix="gradleak-flwr-home-"))
    out_dir = Path(tempfile.mkdtemp(prefix="gradleak-flwr-audit-")) / "audit"
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    port = free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                      f'address = "127.0.0.1:{port}"\ninsecure = true\n')
    logs = home / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    stopped: list[str] = []

    def start(name: str, cmd: list[str]) -> subprocess.Popen:
        handle = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=home)
        procs.append(proc)
        return proc

    overrides = (f"num-server-rounds={args.rounds} num-clients=2 attack='{args.attack}' out-dir='{out_dir}' "
                 f"record-truth=true local-momentum={args.momentum} local-weight-decay={args.weight_decay} "
                 f"attack-seconds={args.attack_seconds} pool='{args.pool}' seed={args.seed}")
    command = ["flwr", "run", str(APP), CONNECTION, "--stream", "--run-config", overrides]
    begin, load = time.monotonic(), os.getloadavg()[0]
    args.load = load
    try:
        link = start("superlink", [str(bin_dir / "flower-superlink"), "--insecure", "--host", "127.0.0.1",
                                   "--port", str(port), "--disable-runtime-dependency-installation"])
        wait_for_port(port, link)
        for i in range(2):
            start(f"supernode-{i}", [str(bin_dir / "flower-supernode"), "--insecure", "--superlink",
                                     f"127.0.0.1:{port}", "--host", "127.0.0.1", "--port", str(free_port()),
                                     "--node-config", f"partition-id={i} num-partitions=2 gradleak-share-truth=true"])
        time.sleep(5)  # let both SuperNodes register before the run samples them
        result = subprocess.run(command, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, timeout=args.timeout)
        streamed = result.stdout
    finally:
        stop(procs, stopped)
    seconds = time.monotonic() - begin
    if not (out_dir / "report.md").exists():
        raise RuntimeError(f"the audit wrote no report; the processes' logs are in {logs}:\n{streamed[-3000:]}")
    report = (out_dir / "report.md").read_text()
    shutil.rmtree(home, ignore_errors=True)
    return render(command, streamed, report, stopped, seconds, port, args)


def _strip(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def render(command: list[str], streamed: str, report: str, stopped: list[str], seconds: float, port: int,
           args: argparse.Namespace) -> str:
    """The results Markdown."""
    import flwr
    import torch

    from gradleak.core.version import __version__

    lines = [_strip(x) for x in streamed.splitlines()]
    progress = [x for x in lines if "gradleak audit" in x or "[ROUND" in x or "Starting" in x]
    section = report.split("## Per client, across rounds", 1)
    tables = "## Per client, across rounds" + section[1].split("## Every update")[0] if len(section) > 1 else report
    shown = " ".join(c if " " not in c else repr(c) for c in command).replace(str(ROOT) + "/", "")
    return "\n".join([
        "# A real Flower deployment, audited (bench/flower_deploy.py)", "",
        f"Written by `python bench/flower_deploy.py --rounds {args.rounds} --attack {args.attack} "
        f"--momentum {args.momentum} --weight-decay {args.weight_decay} --attack-seconds {args.attack_seconds} "
        f"--pool {args.pool} --seed {args.seed}` on {time.strftime('%Y-%m-%d')}; gradleak {__version__}, "
        f"flwr {flwr.__version__}, torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()} "
        f"({os.cpu_count()} cores, shared with other jobs: load average {args.load:.1f} at the start). Wall time "
        f"{seconds:.0f} s for start-up, {args.rounds} rounds and shutdown (each round starts a fresh ClientApp "
        "process per SuperNode, which imports torch and gradleak).", "",
        "Setup: one `flower-superlink --insecure` on 127.0.0.1 (one port for the Fleet, Control and Runtime "
        f"APIs; port {port} this time), two `flower-supernode` processes with `--node-config "
        "\"partition-id=i num-partitions=2 gradleak-share-truth=true\"` (truth shared because this is an "
        "evaluation run), a fresh `FLWR_HOME` whose `config.toml` names the SuperLink, and", "",
        f"    {shown}", "",
        "The app is `examples/flower_audit`: 8 embedded MNIST digits per client (disjoint, chosen by partition "
        "and seed; the same 8 every round, as FL clients reuse their data, so from round 2 on the global model "
        "has trained on them), an untrained MLP 784-200-200-10 to start, FedAvg; the clients train one "
        f"full-batch step of SGD with momentum {args.momentum} and weight decay {args.weight_decay}, which the "
        "server sends in its train config and the audit reads from there (one step: the delta converts to the "
        "exact gradient). Scores are against the batch each client sent back in its reply.", "",
        "## Progress as `flwr run --stream` printed it", "", "```", *progress, "```", "",
        tables.strip(), "",
        "## Shutdown (by process id)", "", *[f"- {x}" for x in stopped], ""])


def main(argv: list[str] | None = None) -> int:
    """Run the deployment and write docs/results/flower_deploy.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--attack", default="spear")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--attack-seconds", type=float, default=120.0)
    parser.add_argument("--pool", default="thread", choices=["thread", "process"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
