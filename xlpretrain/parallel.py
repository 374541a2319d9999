"""The processes, the device mesh and the shardings that the config's logical-axis rules give.

Several processes (hosts) form one JAX runtime after `initialize_distributed`; every process then
sees all devices of all hosts, feeds only the rows of each batch that its own devices hold, and runs
the same program. Modules name their axes (`("vocab", "embed")`, `("batch", "length", "embed")`); `config.sharding_rules`
maps those names onto the mesh axes `data`, `fsdp` and `tensor`. Changing how a model is split
across devices is a config change, not a code change.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from xlpretrain.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")


def initialize_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Joins this process to a multi-process run. `coordinator` is process 0's HOST:PORT with
    `num_processes` and `process_id` given, or "auto" to let JAX read them from the cluster (Cloud
    TPU VMs, GKE, SLURM, Open MPI). None: a single process. On CPU the processes exchange data
    through gloo."""
    if coordinator is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise UserError("--num-processes and --process-id need --coordinator HOST:PORT (process 0's address)")
        return
    if coordinator == "auto":
        if num_processes is not None or process_id is not None:
            raise UserError("--coordinator auto takes the process count and id from the cluster; drop "
                            "--num-processes and --process-id, or give process 0's HOST:PORT")
        coordinator = None
    elif num_processes is None or process_id is None or not 0 <= process_id < num_processes:
        raise UserError(f"--coordinator {coordinator} needs --num-processes N and --process-id I with 0 <= I < N")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)


def make_mesh(mesh: ml_collections.ConfigDict, devices=None) -> Mesh:
    """A mesh of `devices` (default: all) with the sizes in `config.mesh`; one size may be -1 (the rest)."""
    devices = jax.devices() if devices is None else devices
    sizes = [mesh[axis] for axis in MESH_AXES]
    known = math.prod(s for s in sizes if s != -1)
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise UserError(f"mesh sizes {dict(zip(MESH_AXES, sizes))} must be positive, with at most one -1")
    if -1 in sizes:
        if len(devices) % known:
            raise UserError(f"{len(devices)} devices cannot be split into a mesh with sizes "
                            f"{dict(zip(MESH_AXES, sizes))}; make the fixed sizes divide {len(devices)}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise UserError(f"mesh sizes {dict(zip(MESH_AXES, sizes))} need {math.prod(sizes)} devices, "
                        f"but there are {len(devices)}; set one of config.mesh.* to -1")
    grid = mesh_utils.create_device_mesh(sizes, devices=np.asarray(devices).ravel().tolist())
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def rules(config: ml_collections.ConfigDict) -> tuple:
    return tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in config.sharding_rules)


def shardings(mesh: Mesh, logical_rules, logical_specs):
    """A tree of logical PartitionSpecs (or tuples of axis names) -> a tree of NamedShardings."""
    def to_sharding(spec):
        return NamedSharding(mesh, PartitionSpec() if spec is None else nn.logical_to_mesh_axes(spec, logical_rules))
    def is_spec(x):
        return x is None or isinstance(x, PartitionSpec) or (
            type(x) is tuple and len(x) > 0 and all(isinstance(a, str) or a is None for a in x))

    return jax.tree.map(to_sharding, logical_specs, is_leaf=is_spec)


def named_leaves(shapes, named_shardings) -> list[tuple[str, tuple, NamedSharding]]:
    """(path as 'a/b/c', shape, sharding) for every array of a tree and its tree of shardings."""
    return [(jax.tree_util.keystr(path, simple=True, separator="/"), tuple(x.shape), sharding)
            for (path, x), sharding in zip(jax.tree_util.tree_leaves_with_path(shapes), jax.tree.leaves(named_shardings),
                                           strict=True)]


def _ways(mesh: Mesh, entry) -> int:
    """How many pieces one PartitionSpec entry (None, an axis name, or a tuple of them) cuts a dimension into."""
    axes = () if entry is None else (entry,) if isinstance(entry, str) else entry
    return math.prod(mesh.shape[a] for a in axes)


def check_divisible(shapes, named_shardings) -> None:
    """Raises UserError for the first parameter whose dimensions the mesh axes it is split over do not divide."""
    for name, shape, sharding in named_leaves(shapes, named_shardings):
        for dim, (size, entry) in enumerate(zip(shape, sharding.spec)):
            ways = _ways(sharding.mesh, entry)
            if size % ways:
                raise UserError(f"parameter {name} of shape {shape} cannot be split as {sharding.spec} on the "
                                f"mesh {dict(sharding.mesh.shape)}: dimension {dim} ({size}) is not divisible by "
                                f"{ways}; change config.mesh, the model's sizes or config.sharding_rules")


def batch_sharding(mesh: Mesh, logical_rules) -> NamedSharding:
    """Batches are split along their first axis ('batch')."""
    return NamedSharding(mesh, nn.logical_to_mesh_axes(("batch",), logical_rules))


def batch_ways(mesh: Mesh, logical_rules) -> int:
    """How many pieces a batch is split into."""
    return _ways(mesh, nn.logical_to_mesh_axes(("batch",), logical_rules)[0])


def check_batch_size(batch_size: int, mesh: Mesh, logical_rules, where: str) -> None:
    """Raises UserError unless `batch_size` rows divide evenly over the devices the batch is split on."""
    ways = batch_ways(mesh, logical_rules)
    if batch_size % ways:
        raise UserError(f"{where}.batch_size={batch_size} is not divisible by the {ways} devices the batch is "
                        f"split over; use a multiple of {ways}")


def process_rows(sharding: NamedSharding, batch_size: int) -> tuple[int, int]:
    """(index, count): this process supplies part `index` of `count` equal parts of a batch's rows,
    the rows its devices hold (count 1 when every process holds the whole batch)."""
    held = sharding.addressable_devices_indices_map((batch_size,)).values()
    spans = {index[0].indices(batch_size)[:2] for index in held}
    low, high = min(start for start, _ in spans), max(stop for _, stop in spans)
    rows = high - low
    if sum(stop - start for start, stop in spans) != rows or batch_size % rows or low % rows:
        raise UserError(f"this process's devices hold rows {sorted(spans)} of a batch of {batch_size}, not one "
                        f"equal part; order the mesh so that each process's devices are adjacent along 'batch'")
    return low // rows, batch_size // rows


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This host's rows of a batch -> global arrays split along the batch axis."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def wait_one_step_behind(dispatched: list) -> None:
    """Blocks until the last of `dispatched` (the outputs of the steps before the one just dispatched,
    in order) are computed. The train and eval loops call it after each dispatch: they stay one
    step ahead of the devices, which hides the dispatch, and never queue more. A deeper queue
    deadlocks XLA's CPU devices (the fake ones of --xla_force_host_platform_device_count too): they
    share one thread pool, whose threads can all end up waiting in a later step's collective for a
    device that needs a thread to finish an earlier step, and XLA aborts after 40 s with
    "Termination timeout for all reduce"."""
    if dispatched:
        jax.block_until_ready(dispatched[-1])
