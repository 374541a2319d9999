r"""Runs xlpretrain on a Cloud TPU slice: create it, install xlpretrain on every worker, start the same
training command on all workers, read the log, stop, delete. Each action is a few gcloud commands;
with --dry-run it prints them (one a line, quoted to paste into a shell) and runs nothing.

    python experiments/tpu/launch.py create --name txl --zone us-central2-b --accelerator-type v4-32
    python experiments/tpu/launch.py setup  --name txl --zone us-central2-b
    python experiments/tpu/launch.py exec   --name txl --zone us-central2-b -- \
        xlpretrain data download wt103 --dir data/wt103
    python experiments/tpu/launch.py run    --name txl --zone us-central2-b -- \
        xlpretrain train --config xlpretrain/configs/transformer_xl/wt103_base.py \
        --workdir /mnt/shared/wt103_base --config.data.dir=data/wt103 \
        --config.train.batch_size=64 --config.eval.batch_size=16
    python experiments/tpu/launch.py logs   --name txl --zone us-central2-b
    python experiments/tpu/launch.py stop   --name txl --zone us-central2-b
    python experiments/tpu/launch.py delete --name txl --zone us-central2-b

On each worker, setup puts the code in ~/xlpretrain (a `git archive` of --ref in a local checkout,
so uncommitted changes stay behind, or a clone of a git URL) and a Python 3.12 virtual environment
in ~/venv, made with uv because the TPU images' Python 3.10 is older than JAX supports. run and
exec work in the home directory with ~/venv/bin first on PATH, so relative paths are relative to ~.
run appends `--coordinator auto` (JAX finds the slice's hosts itself) and starts the command under
nohup, appending its output to ~/xlpretrain.log, so that a dropped ssh connection does not end it.
The --workdir must be a filesystem mounted at the same path on every worker, since all hosts write
the checkpoints (experiments/tpu/README.md says how, and where the data must be).

Assumes the gcloud CLI is installed and authenticated, with the Cloud TPU API enabled in the
project. Nothing here has been run against real Cloud TPUs: the commands are checked in dry runs
only (tests/test_tpu_launch.py).
"""

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

# TPU software (runtime) versions for JAX, from https://cloud.google.com/tpu/docs/runtimes
# ("PyTorch and JAX"): v6e v2-alpha-tpuv6e, v5p v2-alpha-tpuv5, v5e v2-alpha-tpuv5-lite,
# v4 and older tpu-ubuntu2204-base.
RUNTIMES = {"v2": "tpu-ubuntu2204-base", "v3": "tpu-ubuntu2204-base", "v4": "tpu-ubuntu2204-base",
            "v5litepod": "v2-alpha-tpuv5-lite", "v5p": "v2-alpha-tpuv5", "v6e": "v2-alpha-tpuv6e"}
CODE, VENV, LOG, PID = "xlpretrain", "venv", "xlpretrain.log", "xlpretrain.pid"  # in each worker's home
ON_PATH = f'export PATH="$HOME/{VENV}/bin:$PATH"'
DISTRIBUTED = ("train", "eval", "bench")  # the xlpretrain commands that take --coordinator


def fail(message: str):
    sys.exit(f"launch.py: error: {message}")


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        fail(message)


def gcloud(args, verb: str, *rest: str) -> list[str]:
    project = [f"--project={args.project}"] if args.project else []
    return ["gcloud", "compute", "tpus", "tpu-vm", verb, *rest, f"--zone={args.zone}", *project]


def on_workers(args, script: str, worker: str = "all") -> list[str]:
    return gcloud(args, "ssh", args.name, f"--worker={worker}", f"--command={script}")


def flag_value(command: list[str], flag: str) -> str | None:
    for i, arg in enumerate(command):
        if arg == flag and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1:]
    return None


def create(args):
    """create the TPU slice, with the runtime version of its accelerator family"""
    version = args.version or RUNTIMES.get(args.accelerator_type.rpartition("-")[0])
    if version is None:
        fail(f"--accelerator-type {args.accelerator_type}: expected FAMILY-SIZE, FAMILY one of "
             f"{', '.join(RUNTIMES)} (v5e is v5litepod), e.g. v4-32; or give --version")
    spot = ["--spot"] if args.spot else []
    return [gcloud(args, "create", args.name, f"--accelerator-type={args.accelerator_type}",
                   f"--version={version}", *spot)]


def setup(args):
    """install Python, jax[tpu] and xlpretrain on every worker"""
    if Path(args.repo).is_dir():
        tarball = str(Path(tempfile.gettempdir()) / f"xlpretrain-{args.name}.tar.gz")
        copy = [["git", "-C", args.repo, "archive", "--format=tar.gz", "-o", tarball, args.ref],
                gcloud(args, "scp", tarball, f"{args.name}:{CODE}.tar.gz", "--worker=all")]
        fetch = f"mkdir {CODE} && tar -xzf {CODE}.tar.gz -C {CODE}"
    elif "://" in args.repo or args.repo.startswith("git@"):
        copy = []
        fetch = f"git clone -q {shlex.quote(args.repo)} {CODE} && git -C {CODE} checkout -q {shlex.quote(args.ref)}"
    else:
        fail(f"--repo {args.repo} is neither a local directory nor a git URL")
    script = " && ".join([
        "curl -LsSf https://astral.sh/uv/install.sh | sh",
        f"{{ [ -d {VENV} ] || .local/bin/uv venv --seed --python 3.12 {VENV}; }}",
        f"rm -rf {CODE}", fetch,
        f"{VENV}/bin/pip install -q 'jax[tpu]' -e ./{CODE}"])
    return copy + [on_workers(args, script)]


def run(args):
    """start `xlpretrain train|eval|bench ...` (after --) on every worker, in the background"""
    command = args.command
    if command[0] != "xlpretrain" or len(command) < 2 or command[1] not in DISTRIBUTED:
        fail(f"run starts `xlpretrain {'|'.join(DISTRIBUTED)} ...` on every worker; use exec for other commands")
    if any(arg.split("=")[0] in ("--coordinator", "--num-processes", "--process-id") for arg in command):
        fail("drop --coordinator, --num-processes and --process-id: run appends --coordinator auto")
    workdir = flag_value(command, "--workdir")
    if workdir is not None and not workdir.startswith("/"):
        fail(f"--workdir {workdir}: give the absolute path of a filesystem mounted on every worker (all hosts "
             f"write checkpoints); a relative path is each worker's own disk, and xlpretrain does not read gs:// URLs")
    line = shlex.join([*command, "--coordinator", "auto"])
    return [on_workers(args, f"{ON_PATH} && {{ nohup {line} >> {LOG} 2>&1 < /dev/null & echo $! > {PID}; }}")]


def exec_(args):
    """run a command (after --) on every worker and wait for it, e.g. `xlpretrain data download`"""
    return [on_workers(args, f"{ON_PATH} && {shlex.join(args.command)}")]


def logs(args):
    """print the end of a worker's log"""
    return [on_workers(args, f"tail -n 100 {LOG}", worker=args.worker)]


def stop(args):
    """send SIGTERM to the run on every worker: it saves a checkpoint and exits"""
    return [on_workers(args, f'kill -TERM "$(cat {PID})"')]


def delete(args):
    """delete the TPU slice"""
    return [gcloud(args, "delete", args.name)]


ACTIONS = {"create": create, "setup": setup, "run": run, "exec": exec_, "logs": logs, "stop": stop, "delete": delete}
TAKE_COMMAND = ("run", "exec")


def parser() -> Parser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", required=True, help="the TPU's name")
    common.add_argument("--zone", required=True, help="e.g. us-central2-b")
    common.add_argument("--project", help="default: gcloud's configured project")
    common.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    top = Parser(prog="launch.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = top.add_subparsers(dest="action", required=True)
    for name, action in ACTIONS.items():
        sub = actions.add_parser(name, parents=[common], help=action.__doc__)
        if name == "create":
            sub.add_argument("--accelerator-type", required=True, help="e.g. v4-32, v5litepod-16, v5p-64")
            sub.add_argument("--version", help="runtime version (default: the one for the accelerator family)")
            sub.add_argument("--spot", action="store_true", help="a Spot TPU: cheaper, can be preempted")
        elif name == "setup":
            sub.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]),
                             help="a local checkout (default: this one) or a git URL")
            sub.add_argument("--ref", default="HEAD", help="the commit, branch or tag to install")
        elif name == "logs":
            sub.add_argument("--worker", default="0", help="whose log (default: worker 0)")
    return top


def main(argv: list[str]) -> None:
    argv, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args = parser().parse_args(argv)
    if args.action in TAKE_COMMAND and not command:
        fail(f"{args.action} needs the command after --: {args.action} --name N --zone Z -- xlpretrain ...")
    if command and args.action not in TAKE_COMMAND:
        fail(f"{args.action} takes no command after --")
    if "--dry-run" in command:
        fail("--dry-run goes before --; after it, it is part of the command the workers would run")
    args.command = command
    for cmd in ACTIONS[args.action](args):
        if args.dry_run:
            print(shlex.join(cmd))
            continue
        try:
            subprocess.run(cmd, check=True)
        except FileNotFoundError:
            fail(f"{cmd[0]} not found; install it (gcloud: https://cloud.google.com/sdk/docs/install)")
        except subprocess.CalledProcessError as e:
            fail(f"exit status {e.returncode} from: {shlex.join(cmd)}")


if __name__ == "__main__":
    main(sys.argv[1:])
