"""Config loading, overrides and the one-line errors for every bad config."""

from pathlib import Path

import pytest

from conftest import REPO, TINY, run_cli
from xlpretrain import cli
from xlpretrain import config as config_lib
from xlpretrain.errors import UserError

CONFIGS = sorted((REPO / "configs").rglob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO)) for p in CONFIGS])
def test_every_shipped_config_is_valid_and_documented(path: Path):
    config = config_lib.load(str(path))
    config_lib.validate(config)
    doc = path.read_text().split('"""')[1]
    for heading in ("Command:", "Hardware:", "Runtime:", "Expected:"):
        assert heading in doc, f"{path} docstring lacks {heading}"
    assert f"--config configs/{path.relative_to(REPO / 'configs')}" in doc


def quickstart():
    return config_lib.load(str(REPO / "configs" / "quickstart.py"))


def test_overrides_parse_values_and_reject_unknown_keys():
    config = config_lib.override(quickstart(), ["model.n_layer=3", "model.dropout=0.2", "model.same_length=true",
                                                "train.lr=1e-3", "data.dir=/some/where"])
    assert (config.model.n_layer, config.model.dropout, config.model.same_length) == (3, 0.2, True)
    assert config.train.lr == 1e-3 and config.data.dir == "/some/where"
    with pytest.raises(UserError, match=r"unknown config key 'model.n_layers' \(did you mean model.n_layer\?\)"):
        config_lib.override(quickstart(), ["model.n_layers=3"])
    with pytest.raises(UserError, match="expected a value of type int"):
        config_lib.override(quickstart(), ["model.n_layer=deep"])
    with pytest.raises(UserError, match="must look like --config.KEY=VALUE"):
        config_lib.override(quickstart(), ["model.n_layer"])
    with pytest.raises(UserError, match="^--config.train.steps=None: expected a value of type int, not None$"):
        config_lib.override(quickstart(), ["train.steps=None"])
    with pytest.raises(UserError, match="^--config.model.vocab_size=abc: expected a value of type int$"):
        config_lib.override(quickstart(), ["model.vocab_size=abc"])  # a placeholder, None until the data fills it


@pytest.mark.parametrize("argv, message", [
    (["eval", "--workdir", "w", "--config", "configs/quickstart.py"], "eval --workdir takes the run's own config.json"),
    (["eval", "--hf", "h", "--config", "configs/quickstart.py", "--step", "3"], "eval --hf evaluates the released"),
    (["bench", "--config", "configs/quickstart.py", "--versus", "model.dropout=0.0", "--profile", "p"],
     "^bench --versus does not take --profile; leave --versus out for those$"),
    (["bench", "--config", "configs/quickstart.py", "--memory-speedup", "128", "--synthetic"],
     "^bench --memory-speedup does not take --synthetic;"),
    (["data", "prepare", "ptb", "--src", "s", "--config.train.steps=3"],
     r"^data prepare reads only --config.data.\* settings, not --config.train.steps=3$"),
    (["bench", "--config", "configs/quickstart.py", "--memory-speedup", "128", "--steps", "5"],
     "^bench --memory-speedup does not take --steps;"),
    (["bench", "--config", "configs/quickstart.py", "--steps", "0"], "^bench --steps must be at least 1, got 0$"),
    (["report", "root", "--config.train.steps=3"], r"^report takes no --config.KEY=VALUE overrides \(got "
                                                    r"--config.train.steps=3\)$"),
    (["convert", "export", "--workdir", "w", "--hf", "h", "--config", "c.py"],
     "^convert export does not take --config$"),
    (["convert", "import", "--workdir", "w", "--hf", "h", "--config", "c.py", "--step", "7"],
     "^convert import does not take --step$"),
], ids=["eval-workdir-config", "eval-hf-step", "bench-versus-profile", "bench-memory-synthetic", "prepare-train",
        "bench-memory-steps", "bench-no-steps", "report-overrides", "export-config", "import-step"])
def test_flags_a_command_would_not_read_are_errors(argv, message):
    with pytest.raises(UserError, match=message):
        cli.run(argv)


def test_config_files_are_checked_like_overrides(tmp_path):
    """A key a config file misspells is an error, as it is on the command line; so is an argument to a
    config file whose get_config takes none."""
    path = tmp_path / "typo.py"
    path.write_text("from xlpretrain.config import defaults\n\n\ndef get_config():\n    config = defaults()\n"
                    "    config.train.stpes = 3\n    return config\n")
    with pytest.raises(UserError, match=r"^unknown config key 'train.stpes' \(did you mean train.steps\?\)$"):
        config_lib.validate(config_lib.load(str(path)))
    with pytest.raises(UserError, match="^config file .*/configs/quickstart.py takes no argument; drop ':cpu'$"):
        config_lib.load(str(REPO / "configs" / "quickstart.py") + ":cpu")


@pytest.mark.parametrize("overrides, message", [
    (["model.d_head=16"], r"model.n_head \* model.d_head = 4 \* 16 = 64 must equal model.d_model = 128; "
                          r"set model.d_head=32"),
    (["model.mem_len=-1"], r"model.mem_len must be >= 0 \(0 turns the memory off\)"),
    (["eval.mem_len=-5"], "eval.mem_len must be >= 0"),
    (["eval.same_length=True", "eval.mem_len=0"], "eval.same_length needs eval.mem_len > 0"),
    (["model.clamp_len=0"], "model.clamp_len must be -1"),
    (["objective='gpt'"], "objective 'gpt' is not one of ar"),
    (["train.checkpoint_every=75"], "must be a multiple of train.log_every"),
    (["data.level='words'"], "data.level 'words' is not one of"),
    (["model.cutoffs=[200, 100]"], r"model.cutoffs must be increasing positive word ids, got \[200, 100\]"),
    (["model.cutoffs=[100]", "model.vocab_size=100"], r"model.cutoffs \[100\] must end below the vocabulary size 100"),
    (["model.cutoffs=[10, 20]", "model.tie_projs=[True, True, True, True]"], "model.tie_projs has 4 entries for 3 bins"),
    (["model.cutoffs=[10]", "model.flavor='bert'"], r"adaptive softmax\) are Transformer-XL's"),
    (["model.cutoffs=[10, 20]", "model.tail_capacity=[0.5]"],
     r"model.tail_capacity must give one share in \(0, 1\] per tail bin \(2\), got \[0.5\]"),
    (["model.cutoffs=[10, 20]", "model.div_val=64", "model.d_model=64", "model.d_head=16"],
     "model.div_val=64 leaves the last of 3 bins with no width"),
    (["model.attention_kernel='flash'"], "model.attention_kernel 'flash' is not one of einsum, xla, cudnn"),
    (["model.dropout_bits=12"], "model.dropout_bits must be one of 16, 32, got 12"),
    (["model.attention_kernel='xla'"], "model.attention_kernel='xla' has no relative position term; use it with "
                                       "model.positions='absolute'"),
    (["model.attention_kernel='xla'", "model.positions='absolute'", "model.dropatt=0.1"],
     "model.attention_kernel='xla' has no attention dropout; set model.dropatt=0"),
    (["model.attention_kernel='cudnn'", "model.positions='absolute'", "model.dropatt=0.0"],
     "model.attention_kernel='cudnn' runs in bfloat16; set model.dtype='bfloat16'"),
    (["model.attention_kernel='cudnn'", "model.positions='absolute'", "model.dropatt=0.0", "model.dtype='bfloat16'",
      "model.n_head=2", "model.d_head=256", "model.d_model=512"],
     "model.attention_kernel='cudnn' needs model.d_head a multiple of 8 up to 128, got 256"),
    (["model.attention_kernel='cudnn'", "model.positions='absolute'", "model.dropatt=0.0", "model.dtype='bfloat16'",
      "train.tgt_len=31", "model.max_positions=512"],
     "model.attention_kernel='cudnn' trains with a padding mask only on even lengths; train.tgt_len is 31"),
    (["model.causal=False"], "objective 'ar' predicts each next token, which it must not see; set model.causal=True"),
    (["model.reuse_len=4"], "model.reuse_len, model.bi_data and model.flavor='xlnet' are XLNet's"),
    (["model.bi_data=True"], "objective 'ar' needs model.reuse_len=0, model.bi_data=False"),
    (["model.n_token_types=2"], "objective 'ar' feeds no segment ids; set model.n_token_types=0, got 2"),
    (["sharding_rules=(('batch', 'foo'),)"], r"sharding_rules entry \('batch', 'foo'\) must be \(logical axis name, "
                                             r"mesh axis or tuple of mesh axes or None\), the mesh axes being data, "
                                             r"fsdp, tensor"),
    (["sharding_rules=[1, 2]"], "sharding_rules entry 1 must be"),
    (["train.clip_norm=-1.0"], r"train.clip_norm must be positive \(the gradients' global norm is clipped to it\)"),
    (["train.min_lr_ratio=2.0"], r"train.min_lr_ratio must be in \[0, 1\], got 2.0"),
    (["train.adam_b2=1.0"], r"train.adam_b1 and train.adam_b2 must be in \[0, 1\) and train.adam_eps positive"),
])
def test_bad_configs_get_one_line_errors(overrides, message):
    config = config_lib.override(quickstart(), overrides)
    with pytest.raises(UserError, match=message) as error:
        config_lib.validate(config)
    assert "\n" not in str(error.value)


def test_a_checkpoint_resumes_with_other_compute_settings_but_not_another_model():
    """The signature a workdir's checkpoint is checked against: remat, the attention kernel and the
    dropout rates and masks may change, the model's shape and the data may not, by dotted key, nested ones too."""
    base = config_lib.signature(quickstart())
    assert base == config_lib.signature(config_lib.override(quickstart(), [
        "model.remat='full'", "model.attention_kernel='xla'", "model.dropout=0.0", "model.dropatt=0.3",
        "model.dropout_bits=32"]))
    for change, key in ((f"model.n_layer={quickstart().model.n_layer + 1}", "model.n_layer"),
                        ("data.wordpiece.vocab_size=77", "data.wordpiece.vocab_size")):
        other = config_lib.signature(config_lib.override(quickstart(), [change]))
        assert {k for k, v in other.items() if base[k] != v} == {key}


@pytest.mark.parametrize("overrides, message", [
    (["model.reuse_len=126"], r"model.reuse_len=126 must be in \[1, train.tgt_len - 4 = 124\]"),
    (["plm.perm_size=48"], "plm.perm_size=48 must divide both halves of train.tgt_len=128"),
    (["plm.partial_k=0.5"], "256 targets per sequence do not fit the halves"),
    (["train.batch_size=15"], "train.batch_size=15 must be even"),
    (["data.tokenizer='wordpiece'"], "set data.tokenizer='sentencepiece'"),
    (["model.flavor='bert'"], "set model.flavor='xlnet'"),
    (["train.batch_size=6", "train.micro_batches=2"],
     "train.batch_size=6 must be even in each of train.micro_batches=2"),
    (["eval.same_length=True"], "eval.same_length is for causal attention"),
    (["model.n_token_types=2"], "feeds segment ids 0 to 2; model.n_token_types must be 0 .none. or at least 3"),
])
def test_bad_xlnet_configs_get_one_line_errors(overrides, message):
    config = config_lib.override(config_lib.load(str(REPO / "configs" / "xlnet" / "base.py") + ":cpu"), overrides)
    with pytest.raises(UserError, match=message):
        config_lib.validate(config)


@pytest.mark.parametrize("overrides, message", [
    (["rtd.generator_layers=0.01"], "rtd.generator_layers=0.01 of 4 layers rounds to no layer"),
    (["rtd.generator_size=0.001"], "the generator's width, model.d_model x rtd.generator_size = 0, must be a positive"),
    (["rtd.generator_size=0.7"], "= 179, must be a positive multiple of its 2 heads"),
    (["data.examples.next_sentence=True"], "objective 'rtd' has no next-sentence loss"),
    (["model.n_token_types=1"], "objective 'rtd' feeds segment ids 0 to 1; model.n_token_types must be 0 .none. or "
                                "at least 2, got 1"),
])
def test_bad_electra_configs_get_one_line_errors(overrides, message):
    config = config_lib.override(config_lib.load(str(REPO / "configs" / "electra" / "small.py") + ":cpu"), overrides)
    config_lib.validate(config_lib.load(str(REPO / "configs" / "electra" / "small.py") + ":cpu"))
    with pytest.raises(UserError, match=message):
        config_lib.validate(config)


def test_command_line_errors_are_one_line_without_traceback(tmp_path, cache_dir):
    """The command prints `xlpretrain: error: ...` and exits with 2: for an unknown key, for a batch
    that does not divide over the devices (3 fake CPU devices here), and for a parameter the mesh
    cannot split evenly."""
    unknown = run_cli(["train", "--config", "configs/quickstart.py", "--workdir", str(tmp_path / "a"),
                       "--config.train.batch_sizes=3"], cache_dir, check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "xlpretrain: error: unknown config key 'train.batch_sizes' (did you mean train.batch_size?)"]

    indivisible = run_cli(["train", "--config", "configs/quickstart.py", "--workdir", str(tmp_path / "b"), *TINY,
                           "--config.train.batch_size=4"], cache_dir, devices=3, check=False)
    assert indivisible.returncode == 2
    assert indivisible.stderr.strip().splitlines() == [
        "xlpretrain: error: train.batch_size=4 is not divisible by the 3 devices the batch is split over; "
        "use a multiple of 3"]

    # A split too short for the evaluation's batch stops the run before its first step, not after training.
    short = run_cli(["train", "--config", "configs/quickstart.py", "--workdir", str(tmp_path / "c"), *TINY,
                     "--config.eval.batch_size=1000"], cache_dir, check=False)
    assert short.returncode == 2
    assert short.stderr.strip().splitlines()[-1] == (
        "xlpretrain: error: the valid split (2000 tokens) is too short for 1000 columns of 9 tokens; use a smaller "
        "batch size or segment length")
    assert not (tmp_path / "c").exists()

    (tmp_path / "file").write_text("")
    on_a_file = run_cli(["train", "--config", "configs/quickstart.py", "--workdir", str(tmp_path / "file")], cache_dir,
                        check=False)
    assert on_a_file.returncode == 2
    assert on_a_file.stderr.strip().splitlines() == [
        f"xlpretrain: error: --workdir {tmp_path / 'file'} is a file; pass a directory (it is created if missing)"]

    # wt103_base's 267,735 words cannot be split in two along the vocabulary.
    unsplittable = run_cli(["params", "--config", "configs/transformer_xl/wt103_base.py", "--config.mesh.data=1",
                            "--config.mesh.tensor=2", "--config.train.batch_size=2", "--config.eval.batch_size=2"],
                           cache_dir, devices=2, check=False)
    assert unsplittable.returncode == 2
    assert unsplittable.stderr.strip().splitlines() == [
        "xlpretrain: error: parameter embed/vocab/bias of shape (267735,) cannot be split as P('tensor',) "
        "on the mesh {'data': 1, 'fsdp': 1, 'tensor': 2}: dimension 0 (267735) is not divisible by 2; change "
        "config.mesh, the model's sizes or config.sharding_rules"]
