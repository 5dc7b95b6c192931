#!/usr/bin/env python3
"""Run a `mode sweep` or `mode ablate` as shards on a Dask distributed cluster, then merge.

    python3 scale/dask_sweep.py --scheduler tcp://HOST:8786 --shards N [options] -- \\
        --pipeline pipelines/mnist.toml --threads 1 sweep --seeds 10 --arms all

Everything after `--` is the `mode` command line (global options before the subcommand).
The driver submits one task per shard; each task runs `BIN <args> --shard I/N` on a worker
(in --cwd), which writes its part under <root>/parts/ on storage every worker sees. When every
shard has succeeded it runs `BIN <args> --merge` as one more task and prints its summary.

It schedules nothing itself: Dask places the tasks, and a task whose worker dies is run again
on another worker (the scheduler's `distributed.scheduler.allowed-failures`, 3 by default).
A shard that fails (mode exits non-zero) is not retried: the driver reports it and exits 1
without merging, and the merge itself refuses missing, foreign or conflicting parts.

The same driver runs on Slurm/PBS (dask-jobqueue) or Kubernetes (dask-kubernetes): start the
cluster there and pass its scheduler address. docs/scale.md has the set-up
and the equivalent `sbatch --array` job.
"""

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

SUBCOMMANDS = ("sweep", "ablate")
KINDS = {"sweep": "sweep", "ablate": "ablation"}
GLOBAL_WITH_VALUE = ("--pipeline", "-p", "--root", "--set", "--threads")


def _die_with_parent():
    # In the child, before exec: SIGKILL when the worker thread that started us dies, so a
    # killed worker leaves no orphan shard behind (Linux; elsewhere nothing happens).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _where():
    try:
        from distributed import get_worker

        return f"{get_worker().name} ({socket.gethostname()})"
    except (ImportError, ValueError):
        return socket.gethostname()


def run_mode(cmd, cwd, timeout):
    """Run one `mode` command on this worker; return what it printed, or raise with its error."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RuntimeError(f"{' '.join(cmd)}: no result after {timeout} s on {_where()}")
    if p.returncode != 0:
        last = err.strip().splitlines()[-1:] or ["(no message)"]
        raise RuntimeError(f"{' '.join(cmd)} failed on {_where()} (exit {p.returncode}): {last[0]}")
    return {"host": _where(), "seconds": time.monotonic() - t0, "stdout": out}


def remove_parts(cmd, cwd, kind):
    """Remove the parts of `kind` under the parts folder `cmd` (`mode … info path parts`) names."""
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout
    parts = os.path.join(cwd, out.strip())
    removed = 0
    if os.path.isdir(parts):
        for name in os.listdir(parts):
            if name.startswith(kind + "-"):
                os.remove(os.path.join(parts, name))
                removed += 1
    return removed


def split_args(args):
    """The `mode` arguments before the subcommand, the subcommand, and the rest."""
    for i, a in enumerate(args):
        if a in SUBCOMMANDS and (i == 0 or args[i - 1] not in GLOBAL_WITH_VALUE):
            rest = args[i + 1 :]
            late = [x for x in rest if x.split("=")[0] in ("--pipeline", "-p", "--root")]
            if late:
                sys.exit(f"error: put {late[0].split('=')[0]} before `{a}` (global options first)")
            if any(x in ("--shard", "--merge") or x.startswith("--shard=") for x in rest):
                sys.exit("error: the driver adds --shard and --merge itself; leave them out")
            return args[:i], a, rest
    sys.exit(f"error: the mode command line after -- needs a subcommand: {' or '.join(SUBCOMMANDS)}")


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage="%(prog)s --scheduler ADDRESS --shards N [options] -- MODE_ARGS...",
    )
    ap.add_argument("--scheduler", required=True, help="the Dask scheduler, e.g. tcp://host:8786")
    ap.add_argument("--shards", type=int, required=True, help="how many shards (tasks)")
    ap.add_argument(
        "--bin",
        default=os.path.abspath("target/release/mode"),
        help="the mode binary, at this path on every worker [default: ./target/release/mode]",
    )
    ap.add_argument(
        "--cwd",
        default=os.getcwd(),
        help="the folder every worker runs mode in (the pipelines and data relative to it) "
        "[default: this one]",
    )
    ap.add_argument(
        "--clean",
        action="store_true",
        help="remove the parts of an earlier run of this kind first",
    )
    ap.add_argument(
        "--task-timeout", type=float, default=None, help="seconds one shard may take [default: none]"
    )
    ap.add_argument(
        "--connect-timeout", type=float, default=30, help="seconds to reach the scheduler [30]"
    )
    ap.add_argument(
        "--wait-workers",
        type=int,
        default=1,
        help="wait (up to --connect-timeout) until this many workers have joined [1]",
    )
    ap.add_argument("mode_args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = a.mode_args[1:] if a.mode_args[:1] == ["--"] else a.mode_args
    before, sub, rest = split_args(args)
    kind = KINDS[sub]
    if a.shards < 1:
        sys.exit("error: --shards must be at least 1")

    try:
        from distributed import Client, as_completed
    except ImportError:
        sys.exit(f'error: the driver needs Dask in {sys.executable}: pip install "dask[distributed]"')

    t0 = time.monotonic()
    try:
        client = Client(a.scheduler, timeout=a.connect_timeout)
    except OSError as e:
        sys.exit(f"error: cannot reach the Dask scheduler at {a.scheduler}: {e}")
    try:
        client.wait_for_workers(a.wait_workers, timeout=a.connect_timeout)
        threads = client.nthreads()
        print(f"dask: {len(threads)} workers, {sum(threads.values())} threads at {a.scheduler}",
              flush=True)
        if a.clean:
            n = client.submit(
                remove_parts, [a.bin, *before, "info", "path", "parts"], a.cwd, kind,
                key=f"mode-{kind}-clean", pure=False,
            ).result()
            print(f"removed {n} files of earlier {kind} parts", flush=True)
        base = [a.bin, *before, sub, *rest]
        futures = {
            client.submit(
                run_mode, base + ["--shard", f"{i}/{a.shards}"], a.cwd, a.task_timeout,
                key=f"mode-{kind}-shard-{i}-of-{a.shards}", pure=False,
            ): i
            for i in range(a.shards)
        }
        failed = []
        for f in as_completed(futures):
            i = futures[f]
            try:
                r = f.result()
                print(f"shard {i}/{a.shards} done on {r['host']} in {r['seconds']:.1f} s: "
                      f"{r['stdout'].strip()}", flush=True)
            except Exception as e:  # a failed shard, or one whose workers kept dying
                failed.append(i)
                print(f"shard {i}/{a.shards} failed: {e}", file=sys.stderr, flush=True)
        if failed:
            print(f"error: {len(failed)} of {a.shards} shards failed ({', '.join(map(str, sorted(failed)))}); "
                  "nothing was merged", file=sys.stderr)
            return 1
        merged = client.submit(
            run_mode, base + ["--merge"], a.cwd, a.task_timeout,
            key=f"mode-{kind}-merge-{a.shards}", pure=False,
        ).result()
        print(merged["stdout"].rstrip())
        print(f"dask {sub}: {a.shards} shards merged on {merged['host']}; "
              f"wall time {time.monotonic() - t0:.1f} s", flush=True)
        return 0
    except Exception as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
