#!/usr/bin/env bash
# Issue 8's GPU measurements in one call of the device tool. Each step has its own timeout: 9 min
# 10 s in all with the install, the version check and the kill grace. A session's 15 minutes of
# device time also pay the machine's start (a minute or more): a failed first call leaves room for
# a short rerun, not a second full one.
#
# Here, once per session (the wheels of what the device image lacks, into the git-ignored .whl/):
#     mkdir -p .git/info; echo /.whl/ >> .git/info/exclude; bash benchmarks/gpu_checks.sh wheels
# Then, with the device tool: run(command="bash benchmarks/gpu_checks.sh", carry=[".whl"], timeout_s=570)
# Each check's output comes back in $OUT/<check>.log; `summary.txt` collects the JSON lines.
# Dry run of the same commands at toy sizes on this machine's CPU:
#     SMOKE=1 OUT=$(mktemp -d) PYTHON=.venv/bin/python bash benchmarks/gpu_checks.sh
#
# The device image has jax, flax, optax and orbax-checkpoint of its own (KINDS.md of the device
# tool); xlpretrain runs from the working tree on those, with ml-collections and tensorboardX added.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=(ml-collections==1.1.0 tensorboardX==2.6.4)
PYTHON=${PYTHON:-python3}

if [[ "${1:-}" == wheels ]]; then
  exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
fi

: "${OUT:?OUT must name a folder for the logs}"
if [[ -d .whl ]]; then
  timeout 30 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 XLPRETRAIN_CACHE=${XLPRETRAIN_CACHE:-/tmp/xlp_cache}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  timeout 40 "$PYTHON" -c "import jax, flax, optax, orbax.checkpoint; print('jax', jax.__version__, 'flax',
flax.__version__, 'optax', optax.__version__, 'devices', jax.devices())"; } | tee "$OUT/summary.txt"

if [[ -n "${SMOKE:-}" ]]; then  # toy sizes: checks the commands, not the speed
  SIZE=(--config.model.n_layer=2 --config.train.tgt_len=64 --config.model.mem_len=64); STEPS=2; LENGTHS=32,64; BATCH=2
  BERT=(--config.train.tgt_len=64 --config.train.batch_size=2 --config.model.n_layer=2); DTYPE=float32; KERNEL=xla
else
  SIZE=(); STEPS=10; LENGTHS=800,1800,2800,3800; BATCH=32
  BERT=(--config.train.tgt_len=512 --config.masking.max_predictions=76 --config.train.batch_size=64); DTYPE=bfloat16
  KERNEL=cudnn
fi

check() {  # check NAME SECONDS ARGS...: one xlpretrain command, its log in $OUT/NAME.log
  local name=$1 seconds=$2; shift 2
  echo "+ xlpretrain $*" | tee "$OUT/$name.log"
  local start=$SECONDS
  timeout -k 10 "$seconds" "$PYTHON" -m xlpretrain.cli "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
  grep '^{' "$OUT/$name.log" >>"$OUT/summary.txt"
}

# wt103_large-shaped layers in bfloat16, MFU >= 40% (scanned layers: one layer's compile), and where
# the step's time goes: the relative attention's share decides whether a Pallas kernel for it is
# worth writing (issue 8). The profiled steps run a second compilation without command buffers,
# which would hide their ops from the trace; the timed ones are the default program.
check wt103_large 150 bench --config configs/transformer_xl/wt103_large.py --synthetic --steps $STEPS \
  --config.model.dtype=$DTYPE --config.model.scan_layers=True "${SIZE[@]}" --config.train.batch_size=$BATCH \
  --profile /tmp/trace_wt103_large
# BERT-base masked LM at sequence 512, MFU >= 50%: the einsum attention, then the fused kernel.
check bert_base_512 90 bench --config configs/bert/base.py --synthetic --steps $STEPS --config.model.dtype=$DTYPE \
  "${BERT[@]}"
check bert_base_512_$KERNEL 90 bench --config configs/bert/base.py --synthetic --steps $STEPS \
  --config.model.dtype=$DTYPE "${BERT[@]}" --config.model.dropatt=0.0 --config.model.attention_kernel=$KERNEL
# The memory's evaluation speed-up (paper, Table 9: 363x at 800 to 1,874x at 3,800).
check memory_speedup 110 bench --config configs/transformer_xl/wt103_base.py --memory-speedup $LENGTHS "${SIZE[@]}"
