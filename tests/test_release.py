"""A released Transformer-XL, in the HuggingFace layout (`TransfoXLLMHeadModel` weights, config.json
and the tokenizer's `vocab.pkl`), scored by `xlpretrain eval --hf` and imported by `xlpretrain
convert import`, against the evaluation protocol of the official eval.py computed here with
HuggingFace's model itself on the same random weights."""

import json
import math
import os

import numpy as np
import torch
from transformers import TransfoXLConfig, TransfoXLLMHeadModel, TransfoXLTokenizer

from conftest import run_cli
from hf_oracle import randomize

COLUMNS, TGT_LEN, MEM_LEN, CLAMP_LEN = 2, 5, 7, 6


def write_corpus(directory):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    probs = 1.0 / np.arange(1, 61)
    for split, lines in (("train", 80), ("valid", 8), ("test", 9)):
        text = "\n".join(" ".join(rng.choice(words, size=rng.integers(3, 9), p=probs / probs.sum()))
                         for _ in range(lines))
        (directory / f"{split}.txt").write_text(text + "\n")


def make_release(directory, corpus):
    """A random adaptive-softmax model and its vocabulary, saved as HuggingFace saves a release."""
    os.environ["TRUST_REMOTE_CODE"] = "True"  # TransfoXLTokenizer pickles its vocabulary
    tokenizer = TransfoXLTokenizer(special=["<eos>"], lower_case=False)
    tokenizer.count_file(str(corpus / "train.txt"))
    tokenizer.build_vocab()
    hf = randomize(TransfoXLLMHeadModel(TransfoXLConfig(
        vocab_size=len(tokenizer.idx2sym), cutoffs=[10, 30], div_val=2, d_model=32, d_embed=32, n_head=4, d_head=8,
        d_inner=64, n_layer=2, untie_r=True, proj_share_all_but_first=True, mem_len=MEM_LEN, clamp_len=CLAMP_LEN,
        same_length=True, dropout=0.0, dropatt=0.0)), std=0.1)
    hf.save_pretrained(directory)
    tokenizer.save_vocabulary(str(directory))
    return hf, tokenizer


def reference_ppl(hf, tokenizer, test_file) -> float:
    """eval.py's protocol: the split as COLUMNS contiguous columns, windows of TGT_LEN with the
    memory carried from an empty start (HuggingFace would start from mem_len zero vectors; the
    official code, and xlpretrain, from no memory), token-weighted mean NLL over every predicted token."""
    ids = torch.tensor([tokenizer.sym2idx[word] for line in test_file.read_text().splitlines()
                        for word in line.split() + ["<eos>"]])
    n = len(ids) // COLUMNS
    data = ids[:COLUMNS * n].view(COLUMNS, n)
    total, count = 0.0, 0
    mems = [torch.zeros(0, COLUMNS, hf.config.d_model) for _ in range(hf.config.n_layer)]
    with torch.no_grad():
        for start in range(0, n - 1, TGT_LEN):
            inputs, targets = data[:, start:start + TGT_LEN], data[:, start + 1:start + 1 + TGT_LEN]
            inputs = inputs[:, :targets.shape[1]]
            out = hf(input_ids=inputs, mems=mems)
            mems = out.mems
            log_probs = out.prediction_scores.gather(-1, targets[..., None])[..., 0]
            total -= float(log_probs.sum())
            count += targets.numel()
    return math.exp(total / count)


def test_released_model_scores_as_the_official_protocol(tmp_path, cache_dir):
    corpus, release = tmp_path / "corpus", tmp_path / "release"
    corpus.mkdir()
    write_corpus(corpus)
    hf, tokenizer = make_release(release, corpus)
    config = tmp_path / "config.py"
    config.write_text(
        "from xlpretrain.config import defaults\n"
        "def get_config():\n"
        "    c = defaults()\n"
        f"    c.data.update(corpus='text', dir={str(corpus)!r})\n"
        "    c.model.update(n_layer=2, d_model=32, n_head=4, d_head=8, d_inner=64, dropout=0.0, mem_len=8,\n"
        "                   cutoffs=(10, 30), div_val=2, tie_projs=(False, True, True), untie_r=True)\n"
        f"    c.eval.update(batch_size={COLUMNS}, tgt_len={TGT_LEN}, mem_len={MEM_LEN}, clamp_len={CLAMP_LEN},\n"
        "                  same_length=True)\n"
        "    return c\n")
    expected = reference_ppl(hf, tokenizer, corpus / "test.txt")

    out = run_cli(["eval", "--hf", str(release), "--config", str(config), "--split", "test"], cache_dir).stdout
    line = json.loads(out.strip().splitlines()[-1])
    np.testing.assert_allclose(line["ppl"], expected, rtol=1e-5)

    # The same weights imported into a workdir evaluate to the same number, and train on from there
    # with the command the import prints.
    steps = ["--config.train.steps=2", f"--config.train.batch_size={COLUMNS}", f"--config.train.tgt_len={TGT_LEN}"]
    imported = run_cli(["convert", "import", "--hf", str(release), "--config", str(config), "--workdir",
                        str(tmp_path / "run")] + steps, cache_dir).stdout
    vocabulary = f"--config.data.vocab_file={(release / 'vocab.pkl').resolve()}"
    assert f"xlpretrain train --config <the same config> {vocabulary} --workdir {tmp_path / 'run'}`" in imported
    out = run_cli(["eval", "--workdir", str(tmp_path / "run"), "--step", "0", "--split", "test"], cache_dir).stdout
    np.testing.assert_allclose(json.loads(out.strip().splitlines()[-1])["ppl"], expected, rtol=1e-5)
    trained = run_cli(["train", "--config", str(config), vocabulary, "--workdir", str(tmp_path / "run")] + steps,
                      cache_dir)
    assert "resuming at step 0" in trained.stdout
