"""Training speed of the official PyTorch Transformer-XL on the bench_small model, for comparison
with `xlpretrain bench --config configs/transformer_xl/bench_small.py`.

Run from the `pytorch/` folder of a checkout of kimiyoung/transformer-xl, with torch installed:
    PYTHONPATH=. python /path/to/xlpretrain/experiments/official_txl_bench.py [steps]
Recent torch refuses uint8 masks in `masked_fill`: the two `.byte()` calls that build
`dec_attn_mask` in `MemTransformerLM._forward` must read `.bool()`; with a CPU-only torch,
`torch.version.cuda` is None, so `utils/proj_adaptive_softmax.py`'s CUDA_MAJOR and CUDA_MINOR must
be set to 0 by hand (they are read at import; only a commented-out line uses them). Prints one JSON line with the
median tokens/s after 3 untimed steps. Same model, 2 threads, Adam, clipping 0.25; the tokens are
a fixed Zipf sample, which does not change the cost of a step.
"""
import sys, time, numpy as np, torch
sys.path.append('utils')
from mem_transformer import MemTransformerLM
torch.set_num_threads(2); torch.manual_seed(0)
model = MemTransformerLM(10000, 4, 8, 256, 32, 1024, 0.1, 0.0, tie_weight=True, d_embed=256, div_val=1,
                         tie_projs=[False], pre_lnorm=False, tgt_len=128, ext_len=0, mem_len=128, cutoffs=[],
                         same_length=False, attn_type=0, clamp_len=-1, sample_softmax=-1)
def init(m):
    for n, p in m.named_parameters():
        if 'layer_norm' in n and n.endswith('weight'): torch.nn.init.normal_(p, 1.0, 0.02)
        elif n.endswith('bias') and p.dim() == 1 and 'r_' not in n: torch.nn.init.zeros_(p)
        else: torch.nn.init.normal_(p, 0.0, 0.02)
init(model); model.train()
print("params", sum(p.numel() for p in model.parameters()))
opt = torch.optim.Adam(model.parameters(), lr=2.5e-4)
data = torch.from_numpy(np.random.default_rng(0).zipf(1.2, size=(200 * 128 + 1) * 8) % 10000).long().view(8, -1).t().contiguous()
mems = tuple(); times = []
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 25):
    x, y = data[i*128:(i+1)*128], data[i*128+1:(i+1)*128+1]
    t = time.perf_counter()
    model.zero_grad()
    ret = model(x, y, *mems); loss, mems = ret[0].float().mean(), ret[1:]
    loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25); opt.step()
    times.append(time.perf_counter() - t)
med = float(np.median(times[3:]))
print(f'{{"official_tokens_per_sec": {1024/med:.0f}, "step_ms_median": {med*1000:.0f}}}')
