"""Everything a config implies before a step runs: the corpus, the objective, the mesh and the
shardings, the optimizer, and the jitted train step. `train`, `eval`, `bench` and `params` share it.
"""

from __future__ import annotations

import contextlib
import copy

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from xlpretrain import config as config_lib
from xlpretrain import objectives, parallel
from xlpretrain.data import corpora
from xlpretrain.data.examples import ExampleStream, build_examples
from xlpretrain.data.stream import OrderedStream
from xlpretrain.data.xlnet import XLNetStream
from xlpretrain.errors import UserError
from xlpretrain.train import optim
from xlpretrain.train.state import TrainState

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


class Experiment:
    """`with_data=False` builds the model side alone (parameter counts, plans, conversion, steps on
    random batches), which needs `model.vocab_size` in the config; a mask id the data would give is
    token 0 there."""

    def __init__(self, config: ml_collections.ConfigDict, with_data: bool = True):
        config = copy.deepcopy(config)
        config_lib.validate(config)
        self.data = objectives.REGISTRY[config.objective].data
        self.corpus = self.documents = None
        if with_data and self.data != "stream":
            self.documents = corpora.load_documents(config.data)
            self._fill(config, "model.vocab_size", len(self.documents.tokenizer))
            self._fill(config, "masking.mask_id", self.documents.tokenizer.mask_id)
        elif with_data:
            self.corpus = corpora.load(config.data)
            self._fill(config, "model.vocab_size", len(self.corpus.vocab))
            config_lib.check_cutoffs(config.model)
        elif config.model.vocab_size is None:
            raise UserError("model.vocab_size is not set; set it, or give the data it is taken from")
        elif "masking" in config and config.masking.mask_id is None:
            config.masking.mask_id = 0
        self.config = config
        self._example_sets = {}
        self.mesh = parallel.make_mesh(config.mesh)
        platform = self.mesh.devices.flat[0].platform
        if config.model.attention_kernel == "cudnn" and platform != "gpu":
            raise UserError(f"model.attention_kernel='cudnn' runs on NVIDIA GPUs, not on {platform}; "
                            f"set model.attention_kernel='xla' there")
        self.rules = parallel.rules(config)
        for where in ("train", "eval"):
            parallel.check_batch_size(config[where].batch_size, self.mesh, self.rules, where)
        micro, ways = config.train.micro_batches, parallel.batch_ways(self.mesh, self.rules)
        if micro < 1 or config.train.batch_size % (micro * ways):
            raise UserError(f"train.micro_batches={micro} must divide train.batch_size={config.train.batch_size} "
                            f"into micro-batches that split over the {ways} devices of the batch")
        self.objective = objectives.build(config)
        self.tx = optim.optimizer(config.train)
        self.batch_sharding = parallel.batch_sharding(self.mesh, self.rules)

        boxed = jax.eval_shape(self._init_boxed, jax.random.PRNGKey(0))
        self.state_shapes = nn.meta.unbox(boxed)
        specs = nn.get_partition_spec(boxed).replace(memory=self.objective.memory_axes)
        self.state_shardings = parallel.shardings(self.mesh, self.rules, specs)
        parallel.check_divisible(self.state_shapes.params, self.state_shardings.params)

    @contextlib.contextmanager
    def context(self):
        """Tracing under this context applies the logical-axis rules to activation constraints."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            yield

    def _init_boxed(self, rng) -> TrainState:
        params = self.objective.init_params(rng)
        return TrainState(step=np.int32(0), params=params, opt_state=self.tx.init(params), rng=rng,
                          memory=self.objective.init_memory(self.config.train.batch_size))

    @staticmethod
    def _fill(config: ml_collections.ConfigDict, key: str, value: int) -> None:
        """Sets a field the data determines, or checks the value the config gives."""
        section, name = key.split(".")
        given = config[section][name]
        if given is None:
            config[section][name] = value
        elif given != value:
            raise UserError(f"{key}={given} but the data gives {value}; set {key}=None to take it from the data")

    def init_state(self) -> TrainState:
        init = jax.jit(lambda rng: nn.meta.unbox(self._init_boxed(rng)), out_shardings=self.state_shardings)
        return init(jax.random.PRNGKey(self.config.seed))

    @property
    def tokens_per_step(self) -> int:
        """Tokens of a training batch: batch_size rows of tgt_len."""
        return self.config.train.batch_size * self.config.train.tgt_len

    def param_count(self) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.state_shapes.params))

    def param_report(self) -> list[tuple[str, int]]:
        """The objective's breakdown of the parameter count, then the total."""
        return self.objective.param_report(self.state_shapes.params) + [("total", self.param_count())]

    def param_shardings(self) -> list[str]:
        """One line per parameter: its path, shape and PartitionSpec on this mesh."""
        return [f"{name:<64} {str(shape):<16} {sharding.spec}"
                for name, shape, sharding in parallel.named_leaves(self.state_shapes.params, self.state_shardings.params)]

    def to_global(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This host's rows of a batch -> global arrays split along the batch axis of the mesh."""
        return parallel.to_global(batch, self.batch_sharding)

    def batch_shapes(self, section: str = "train") -> dict[str, jax.ShapeDtypeStruct]:
        """The global batch of `config[section]` as shapes, dtypes and shardings, without the data."""
        sizes = self.config[section]
        if self.data == "stream":
            shapes = OrderedStream.batch_shapes(sizes.batch_size, sizes.tgt_len)
        elif self.data == "xlnet":
            shapes = XLNetStream.batch_shapes(sizes.batch_size, sizes.tgt_len)
        else:
            shapes = ExampleStream.batch_shapes(sizes.batch_size, sizes.tgt_len, self.config.data.examples.next_sentence)
        return {name: jax.ShapeDtypeStruct(shape, dtype, sharding=self.batch_sharding)
                for name, (shape, dtype) in shapes.items()}

    def gradients(self, params, batch, memory, rng):
        """(loss, next memory, metrics, gradients) of a batch, accumulated over train.micro_batches
        micro-batches: micro-batch j is rows j, j + k, j + 2k, ... (k micro-batches) of the batch and
        of the memory, so that every device holds its share of each; the loss and the gradients are
        the means over micro-batches, the metrics' (sum, weight) pairs their sums."""
        grad_fn = jax.value_and_grad(self.objective.loss, has_aux=True)
        k = self.config.train.micro_batches
        if k == 1:
            (loss, (memory, metrics)), grads = grad_fn(params, batch, memory, rng, True)
            return loss, memory, metrics, grads

        def split(x, axis=0):  # [..., B, ...] -> [k, ..., B / k, ...]
            return jnp.moveaxis(x.reshape(x.shape[:axis] + (x.shape[axis] // k, k) + x.shape[axis + 1:]), axis + 1, 0)

        def merge(x, axis=0):
            x = jnp.moveaxis(x, 0, axis + 1)
            return x.reshape(x.shape[:axis] + (-1,) + x.shape[axis + 2:])

        batch_axis = jax.tree.map(lambda _, axes: axes.index("batch"), memory, self.objective.memory_axes)

        def micro_batch(grads, inputs):
            j, batch, memory = inputs
            (loss, (memory, metrics)), more = grad_fn(params, batch, memory, jax.random.fold_in(rng, j), True)
            return jax.tree.map(jnp.add, grads, more), (loss, memory, metrics)

        grads, (losses, memory, metrics) = jax.lax.scan(
            micro_batch, jax.tree.map(jnp.zeros_like, params),
            (jnp.arange(k), jax.tree.map(split, batch), jax.tree.map(split, memory, batch_axis)))
        return (losses.mean(), jax.tree.map(merge, memory, batch_axis), jax.tree.map(lambda x: x.sum(0), metrics),
                jax.tree.map(lambda g: g / k, grads))

    def train_step(self):
        """The jitted step (state, batch) -> (state, metrics); the old state's buffers are donated."""
        tx = self.tx

        def step(state: TrainState, batch):
            rng = jax.random.fold_in(state.rng, state.step)
            loss, memory, metrics, grads = self.gradients(state.params, batch, state.memory, rng)
            with jax.named_scope("optimizer"):  # a scope of its own in profiles (bench --profile)
                updates, opt_state = tx.update(grads, state.opt_state, state.params)
                params = optax.apply_updates(state.params, updates)
                grad_norm = optax.tree.norm(grads)
            state = TrainState(step=state.step + 1, params=params, opt_state=opt_state, rng=state.rng, memory=memory)
            return state, {"objective": metrics, "loss": loss, "grad_norm": grad_norm}

        return jax.jit(step, in_shardings=(self.state_shardings, self.batch_sharding),
                       out_shardings=(self.state_shardings, None), donate_argnums=0)

    def stream(self, split: str, section: str = "train") -> OrderedStream | ExampleStream | XLNetStream:
        """This host's part of `split`, cut by `config[section]`'s batch_size and tgt_len: columns
        of the token stream, rows of examples of tgt_len tokens for the encoder objectives, or
        XLNet's examples that continue each row's memory."""
        sizes = self.config[section]
        host = parallel.process_rows(self.batch_sharding, sizes.batch_size)
        if self.data == "stream":
            return OrderedStream(self.corpus.splits[split], sizes.batch_size, sizes.tgt_len, *host, name=split)
        settings = self.config.data.examples
        if self.data == "xlnet":
            model = self.config.model
            return XLNetStream(self.documents.splits[split], self.documents.tokenizer, sizes.batch_size, sizes.tgt_len,
                               model.reuse_len, model.bi_data, settings.seed, *host, name=split)
        key = (split, sizes.tgt_len)
        if key not in self._example_sets:
            self._example_sets[key] = build_examples(self.documents.splits[split], self.documents.tokenizer,
                                                     sizes.tgt_len, settings.next_sentence, settings.short_seq_prob,
                                                     settings.seed)
        return ExampleStream(self._example_sets[key], self.documents.tokenizer, sizes.batch_size, self.config.seed,
                             *host, settings.next_sentence, name=split)

    def report(self, summary: dict, split: str) -> dict:
        """A metrics line: bpc on character data, and on evaluation lines the true entropy rate when
        the corpus knows it."""
        line = dict(summary)
        if self.corpus is None:
            return line
        if self.corpus.level in ("char", "byte"):
            line["bpc"] = line["bits_per_token"]
        if split != "train" and self.corpus.true_bits_per_token is not None:
            line["true_bits_per_token"] = self.corpus.true_bits_per_token
        return line
