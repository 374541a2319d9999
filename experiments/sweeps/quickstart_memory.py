"""How much the Transformer-XL memory helps on the quickstart language: mem_len 0, 32 and 128 (the
same memory in training and evaluation), two seeds each, against the language's true entropy rate.

Command:   xlpretrain sweep experiments/sweeps/quickstart_memory.py --workdir runs/quickstart_memory --parallel 2
           xlpretrain report runs/quickstart_memory --metric valid/bits_per_token
           xlpretrain plot runs/quickstart_memory --metric valid/bits_per_token
Hardware:  2 CPU cores (each trial on one core, two at a time).
Runtime:   12 min 57 s for the sweep, the quickstart corpus generated afresh (2 CPU cores, 2026-12-02):
           3 min 15 s a trial without memory, 3 min 47 s with 32, 5 min 41 s with 128.
Expected:  test bits per token 6.64 without memory, 6.50 with 32, 6.47 with 128, against a true
           entropy rate of 6.064; the two seeds of each within 0.002 (experiments/README.md).
"""

from xlpretrain.sweep import product

BASE = "configs/quickstart.py"
FIXED = {"train.steps": 4000, "train.eval_every": 500, "train.checkpoint_every": 500}
TRIALS = product({"model.mem_len": [0, 32, 128], "eval.mem_len": [0, 32, 128]}, {"seed": [0, 1]})
