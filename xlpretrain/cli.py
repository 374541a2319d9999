"""The `xlpretrain` command: train, eval, params, bench, plan, convert, data, sweep, report, plot.

    xlpretrain train  --config configs/quickstart.py --workdir DIR [--restart] [--config.KEY=VALUE ...]
    xlpretrain eval   --workdir DIR [--split test] [--step N] [--config.eval.mem_len=640 ...]
    xlpretrain eval   --hf DIR --config PATH [--split test] [--config.KEY=VALUE ...]
    xlpretrain params --config PATH [--shardings] [--config.KEY=VALUE ...]
    xlpretrain bench  --config PATH [--steps N] [--synthetic] [--profile DIR] [--config.KEY=VALUE ...]
    xlpretrain bench  --config PATH --versus KEY=VALUE [--versus KEY=VALUE ...] [--steps N]
    xlpretrain bench  --config PATH --memory-speedup 128,256,512,1024 [--repeats N]
    xlpretrain plan   --config PATH [--compile] [--json] [--config.mesh.fsdp=8 ...]
    xlpretrain convert import --hf DIR [--generator DIR] --config PATH --workdir OUT [--config.KEY=VALUE ...]
    xlpretrain convert export --workdir DIR --hf OUT [--step N]
    xlpretrain data download NAME --dir DIR        (NAME: wt103, wt2, ptb, enwik8, text8, lm1b)
    xlpretrain data prepare NAME --src DIR [--cache DIR] [--config.data.KEY=VALUE ...]   (NAME: a data.corpus)
    xlpretrain sweep  FILE --workdir ROOT [--runner local|ray|print] [--parallel N] [--ray-address ADDR]
    xlpretrain report ROOT [--metric SPLIT/KEY]      (default valid/loss)
    xlpretrain plot   ROOT [--metric SPLIT/KEY] [--x step|tokens|seconds] [--out FILE]

`--config.KEY=VALUE` (or `--config.KEY VALUE`) overrides any config field; unknown keys are errors.
train, eval and bench run on several hosts with the same command on each and `--coordinator
HOST:PORT --num-processes N --process-id I` (or `--coordinator auto` on a Cloud TPU VM, GKE, SLURM
or Open MPI, where JAX reads them from the cluster); $XLPRETRAIN_COORDINATOR,
$XLPRETRAIN_NUM_PROCESSES and $XLPRETRAIN_PROCESS_ID give the same.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import sys

from xlpretrain.errors import UserError

BENCH_STEPS = 20  # `bench`'s timed steps unless --steps says otherwise


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.KEY=VALUE` / `--config.KEY VALUE` overrides from the other arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            if "=" in arg:
                overrides.append(arg[len("--config."):])
            elif i + 1 < len(argv):
                overrides.append(arg[len("--config."):] + "=" + argv[i + 1])
                i += 1
            else:
                raise UserError(f"{arg} needs a value: {arg}=VALUE")
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _distributed_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("several processes (hosts)")
    environ = os.environ.get
    group.add_argument("--coordinator", default=environ("XLPRETRAIN_COORDINATOR"),
                       help="process 0's HOST:PORT, or 'auto' (JAX reads the cluster: Cloud TPU, GKE, SLURM, Open MPI)")
    group.add_argument("--num-processes", type=int, default=environ("XLPRETRAIN_NUM_PROCESSES"))
    group.add_argument("--process-id", type=int, default=environ("XLPRETRAIN_PROCESS_ID"))
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlpretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    distributed = [_distributed_flags()]
    train = commands.add_parser("train", help="train, or resume the run in --workdir", parents=distributed)
    train.add_argument("--config", required=True, help="config file, path/to/config.py[:arg]")
    train.add_argument("--workdir", required=True)
    train.add_argument("--restart", action="store_true",
                       help="start over in a workdir holding another run (the old one is moved to previous/)")
    evaluate = commands.add_parser("eval", help="evaluate a run's checkpoint with the evaluation protocol",
                                   parents=distributed)
    evaluate.add_argument("--workdir", help="the run to evaluate")
    evaluate.add_argument("--hf", help="instead: a released Transformer-XL (HuggingFace TransfoXLLMHeadModel + vocab.pkl)")
    evaluate.add_argument("--config", help="with --hf: the config whose model and evaluation settings to use")
    evaluate.add_argument("--split", default="test", choices=("valid", "test"))
    evaluate.add_argument("--step", type=int, default=None, help="checkpoint step (default: best valid loss)")
    params = commands.add_parser("params", help="print the exact parameter count of a config, with its parts")
    params.add_argument("--config", required=True)
    params.add_argument("--shardings", action="store_true",
                        help="also print every parameter's shape and PartitionSpec on the config's mesh")
    plan = commands.add_parser("plan", help="FLOPs per token and per-device memory of a config on its mesh, "
                                             "before running anything")
    plan.add_argument("--config", required=True)
    plan.add_argument("--compile", action="store_true",
                      help="also compile the train step for the mesh and print XLA's memory analysis beside the estimate")
    plan.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bench = commands.add_parser("bench", help="measure training tokens/s, MFU, compile time and memory",
                                parents=distributed)
    bench.add_argument("--config", required=True)
    bench.add_argument("--steps", type=int, help=f"timed steps (default {BENCH_STEPS})")
    bench.add_argument("--synthetic", action="store_true",
                       help="time random batches of the config's shapes instead of its data (needs model.vocab_size)")
    bench.add_argument("--profile", metavar="DIR",
                       help="also trace a few steps into DIR (TensorBoard, XProf, Perfetto) and print where their "
                            "time went, by model scope, forward and backward")
    bench.add_argument("--versus", metavar="KEY=VALUE", action="append",
                       help="instead: time the config against itself with these overrides, steps alternating in "
                            "one process, and print the ratio of step times (repeatable)")
    bench.add_argument("--memory-speedup", metavar="LENGTHS",
                       help="instead: evaluation time per token with the memory against a sliding window, at these "
                            "comma-separated attention lengths (Transformer-XL paper, Table 9), e.g. 128,256,512,1024")
    bench.add_argument("--repeats", type=int, default=5, help="--memory-speedup: timed calls per figure (median)")
    convert = commands.add_parser("convert", help="import HuggingFace BERT/ELECTRA/XLNet weights into a workdir, or export")
    convert.add_argument("direction", choices=("import", "export"))
    convert.add_argument("--hf", required=True, help="HuggingFace checkpoint directory (config.json + weights)")
    convert.add_argument("--generator", help="import: the ElectraForMaskedLM directory of an ElectraForPreTraining")
    convert.add_argument("--config", help="import: the config of the run the weights go into")
    convert.add_argument("--workdir", required=True)
    convert.add_argument("--step", type=int, default=None, help="export: checkpoint step (default: the latest)")
    data = commands.add_parser("data", help="download a benchmark corpus, or tokenize one into the cache")
    actions = data.add_subparsers(dest="action", required=True)
    download = actions.add_parser("download", help="download a benchmark's original files into --dir, SHA-256 checked")
    download.add_argument("name", help="wt103, wt2, ptb, enwik8, text8 or lm1b")
    download.add_argument("--dir", required=True, help="where the files go: the data.dir of runs on this corpus")
    prepare = actions.add_parser("prepare", help="tokenize a corpus into the cache and print its sizes")
    prepare.add_argument("name", help="a data.corpus: wt103, wt2, ptb, enwik8, text8, lm1b, text or tfds:NAME")
    prepare.add_argument("--src", required=True, help="the folder holding the corpus (data.dir)")
    prepare.add_argument("--cache", default="", help="the cache (data.cache_dir; default $XLPRETRAIN_CACHE or ~/.cache/xlpretrain)")
    sweep = commands.add_parser("sweep", help="run a sweep file's trials (skipping finished ones, resuming the others)")
    sweep.add_argument("file", help="a sweep file, e.g. experiments/sweeps/quickstart_memory.py")
    sweep.add_argument("--workdir", required=True, help="the sweep's root: trial NAME trains in ROOT/NAME")
    sweep.add_argument("--runner", default="local", choices=("local", "ray", "print"),
                       help="local: processes on this machine; ray: tasks on a Ray cluster; "
                            "print: one `xlpretrain train` command per unfinished trial")
    sweep.add_argument("--parallel", type=int, default=1,
                       help="local: trials at once, each with an equal share of the CPU cores and GPUs")
    sweep.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS", "auto"),
                       help="ray: the cluster's address (default $RAY_ADDRESS, else the running local cluster)")
    sweep.add_argument("--cpus-per-trial", type=float, default=1, help="ray: the CPUs a trial's task reserves")
    sweep.add_argument("--gpus-per-trial", type=float, default=0, help="ray: the GPUs a trial's task reserves")
    for name, help_text in (("report", "one Markdown and CSV table of every run below ROOT"),
                            ("plot", "a PNG of learning curves, one line per run below ROOT")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("root")
        command.add_argument("--metric", default="valid/loss",
                             help="SPLIT/KEY from metrics.jsonl, e.g. valid/ppl or valid/bits_per_token")
    plot_command = commands.choices["plot"]
    plot_command.add_argument("--x", default="step", choices=("step", "tokens", "seconds"))
    plot_command.add_argument("--out", help="the PNG (default ROOT/SPLIT-KEY.png)")
    return parser


def _config(spec: str, overrides: list[str]):
    from xlpretrain import config as config_lib
    return config_lib.override(config_lib.load(spec), overrides)


def _refuse_unread_bench_flags(args: argparse.Namespace) -> None:
    """`bench --memory-speedup` and `bench --versus` are measurements of their own; a flag of the
    plain bench that they would not read is an error rather than silently dropped."""
    unread = {"--memory-speedup": (("--versus", args.versus), ("--synthetic", args.synthetic),
                                   ("--profile", args.profile), ("--steps", args.steps is not None)),
              "--versus": (("--profile", args.profile),)}
    if args.steps is not None and args.steps < 1:
        raise UserError(f"bench --steps must be at least 1, got {args.steps}")
    mode = "--memory-speedup" if args.memory_speedup else "--versus" if args.versus else None
    given = [flag for flag, value in unread.get(mode, ()) if value]
    if given:
        raise UserError(f"bench {mode} does not take {' or '.join(given)}; leave {mode} out for those")


def run(argv: list[str]) -> None:
    argv, overrides = _split_overrides(argv)
    args = _parser().parse_args(argv)
    if "coordinator" in args:
        from xlpretrain import parallel
        parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    takes_overrides = (args.command in ("train", "eval", "params", "plan", "bench")
                       or args.command == "convert" and args.direction == "import"
                       or args.command == "data" and args.action == "prepare")
    if overrides and not takes_overrides:
        raise UserError(f"{args.command} takes no --config.KEY=VALUE overrides (got --config.{overrides[0]})")
    if args.command == "convert":
        unread = ((("--config", args.config), ("--generator", args.generator)) if args.direction == "export"
                  else (("--step", args.step is not None),))
        given = [flag for flag, value in unread if value]
        if given:
            raise UserError(f"convert {args.direction} does not take {' or '.join(given)}")
    if args.command == "bench":
        _refuse_unread_bench_flags(args)
        steps = BENCH_STEPS if args.steps is None else args.steps
    if args.command == "train":
        from xlpretrain.train.loop import train
        train(_config(args.config, overrides), args.workdir, restart=args.restart)
    elif args.command == "eval":
        from xlpretrain.train import evaluate
        if (args.workdir is None) == (args.hf is None):
            raise UserError("eval needs either --workdir (a run) or --hf with --config (released weights)")
        if args.hf is None:
            if args.config is not None:
                raise UserError("eval --workdir takes the run's own config.json; drop --config (the evaluation's "
                                "settings change with --config.eval.KEY=VALUE)")
            evaluate.evaluate_workdir(args.workdir, args.split, args.step, overrides)
        elif args.step is not None:
            raise UserError("eval --hf evaluates the released weights; --step picks a checkpoint of a --workdir run")
        elif args.config is None:
            raise UserError("eval --hf needs --config, e.g. configs/transformer_xl/wt103_large.py")
        else:
            evaluate.evaluate_release(args.hf, _config(args.config, overrides), args.split)
    elif args.command == "params":
        from xlpretrain.train.experiment import Experiment
        config = _config(args.config, overrides)
        experiment = Experiment(config, with_data=config.model.vocab_size is None)
        for what, count in experiment.param_report():
            print(f"{count:>15,}  {what}")
        if args.shardings:
            print(f"mesh {dict(experiment.mesh.shape)}")
            for line in experiment.param_shardings():
                print(line)
    elif args.command == "convert":
        from xlpretrain.convert import checkpoints
        if args.direction == "export":
            checkpoints.export_checkpoint(args.workdir, args.hf, args.step)
        elif args.config is None:
            raise UserError("convert import needs --config, the config of the run the weights go into")
        else:
            checkpoints.import_checkpoint(args.hf, args.generator, _config(args.config, overrides), args.workdir)
    elif args.command == "data":
        from xlpretrain.data import download
        if args.action == "download":
            download.download(args.name, args.dir)
        else:
            print(download.prepare(args.name, args.src, args.cache, overrides))
    elif args.command == "plan":
        from xlpretrain.train import plan
        report = plan.plan(_config(args.config, overrides), compile=args.compile)
        print(json.dumps(report) if args.json else plan.table(report))
    elif args.command == "sweep":
        from xlpretrain.sweep import runners, spec
        failed = runners.run(spec.load(args.file), args.workdir, args.runner, args.parallel, args.ray_address,
                             args.cpus_per_trial, args.gpus_per_trial)
        if failed:
            raise UserError(f"{failed} trial(s) failed; `xlpretrain report {args.workdir}` shows their errors")
    elif args.command == "report":
        from xlpretrain.sweep import report
        print(report.report(args.root, args.metric), end="")
        print(f"(also in {os.path.join(args.root, 'report.md')} and report.csv)")
    elif args.command == "plot":
        from xlpretrain.sweep import report
        out, labels = report.plot(args.root, args.metric, args.x, args.out)
        print(f"wrote {out} ({len(labels)} runs)")
    elif args.command == "bench" and args.memory_speedup:
        from xlpretrain.train import bench
        try:
            lengths = [int(length) for length in args.memory_speedup.split(",")]
        except ValueError:
            raise UserError(f"--memory-speedup takes comma-separated integers, got {args.memory_speedup!r}") from None
        rows = bench.memory_speedup(_config(args.config, overrides), lengths, args.repeats)
        for row in rows:
            print(json.dumps(row))
        print(bench.speedup_table(rows))
    elif args.command == "bench" and args.versus:
        from xlpretrain.train import bench
        config = _config(args.config, overrides)
        result = bench.compare(config, _config(args.config, overrides + args.versus), steps, args.synthetic)
        first, second = result["tokens_per_sec"]
        print(f"{first:,.0f} tokens/s as configured, {second:,.0f} with {' '.join(args.versus)}: the configured "
              f"step takes {result['time_ratio']:.3f} times as long (median of {steps} alternating pairs)")
        print(json.dumps(result))
    elif args.command == "bench":
        from xlpretrain.train import bench
        result = bench.bench(_config(args.config, overrides), steps, args.synthetic, args.profile)
        print(bench.table(result))
        if result["profile"]:
            from xlpretrain.train import profile
            print(profile.table(result["profile"], result["step_ms_median"]))
        print(json.dumps(result))


def keep_freed_memory() -> None:
    """Makes glibc keep freed memory for reuse instead of returning it to the operating system.

    XLA allocates a step's temporaries afresh at every step (359 MB for bench_small); by default
    glibc maps large blocks with mmap and unmaps them on free, so every step faults every page in
    again (about 90,000 page faults a step on 2 CPU cores, a fifth of the step time). No mmap and no
    trimming keep those pages mapped. Arenas are limited to one per core: glibc's default of eight
    per core spreads the blocks over arenas that cannot hold them; a single arena serialises the
    small allocations of small models (measured on 2 cores: 18% slower on the quickstart model).
    Must run before JAX starts its threads; a no-op where glibc is absent.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_top_pad, m_mmap_max, m_arena_max = -1, -2, -4, -8
    libc.mallopt(m_arena_max, max(2, len(os.sched_getaffinity(0))))
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**31 - 1)
    libc.mallopt(m_top_pad, 512 << 20)


def main(argv: list[str] | None = None) -> None:
    keep_freed_memory()
    # Orbax and absl log routine notices as warnings; keep the console to what the user asked for.
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        run(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        print(f"xlpretrain: error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        resumes = (sys.argv[1:] if argv is None else argv)[:1] in (["train"], ["sweep"])
        print("xlpretrain: interrupted" + ("; rerun the same command to resume from the last checkpoint" if resumes
                                           else ""), file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
