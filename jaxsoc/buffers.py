"""Replay buffers for the off-policy learners: uniform replay and proportional prioritized replay.

Everything here is a pure function of a pytree state, so a buffer lives in the `lax.scan` carry of a
training run, is `jit`-ed with it and `vmap`-ed over seeds like the rest of the train state (the
engine vmaps `Trainer.init`/`update`; the buffer functions need nothing special for that). Sizes
(`capacity`, `batch_size`, the number of items added per call) are static Python ints.

Items
-----
An *item* is one transition: an arbitrary pytree of arrays, e.g.::

    {"obs": {"sc": [64], "th": [128], "at": [64], "ro": [96]}, "next_obs": {...same...},
     "actions": {"sc": [8], "th": [16], "at": [1], "ro": [12]}, "reward": [], "done": []}

The buffer stores each leaf as `[capacity, *leaf_shape]`. `add` takes a batch `[n, *leaf_shape]`
(one transition per env for one env-step, `n <= capacity`), `sample` returns `[batch, *leaf_shape]`
with the item's original dtypes, plus the slot indices `[batch]`.

Uniform replay
--------------
    state = init(example_item, capacity, obs_dtype=None)      # ReplayState
    state = add(state, items)                                 # ring buffer, oldest overwritten
    ok    = can_sample(state, batch_size)                     # bool [], size >= batch_size
    items, indices = sample(state, key, batch_size)           # uniform, with replacement

Prioritized replay (proportional PER, Schaul et al. 2016)
---------------------------------------------------------
    state = init_prioritized(example_item, capacity, alpha=0.6, eps=1e-6, beta0=0.4,
                             beta_steps=60_000, obs_dtype=None)          # PrioritizedState
    state = add(state, items, priorities=None)                # new items: max priority so far
    state, s = sample_prioritized(state, key, batch_size)     # s.items, s.indices, s.weights, ...
    state = update_priorities(state, s.indices, td_errors)    # td_errors [batch]

Also: `current_beta(state)`, `slot_priorities(state)` `[capacity]`, `combine_td_errors(tds, rule)`,
`bytes_per_transition(example_item, obs_dtype=)`, `buffer_bytes(example_item, capacity, ...)`.
`batch_size` must be static: `jax.jit(sample_prioritized, static_argnums=2)` when jitting alone.

* Stored priority p_i = (|x| + eps)^alpha, where x is a TD error (`update_priorities`) or an
  explicit push priority (`add(..., priorities=x)`; the HMARL reference pushes |r| + 0.1). The
  exponent is applied exactly once on both paths (the reference applies it twice on its
  default-priority path, docs/reference.md §4 D18). Items added without priorities get `max_priority`, the
  largest stored priority seen so far (initially 1), as in the PER paper.
* Sampling is i.i.d. with replacement, P(i) = p_i / sum_j p_j, via a sum tree held as one flat
  float32 array `[2 * L]` (L = capacity rounded up to a power of two; node k has children 2k and
  2k+1, root at 1, slot i at leaf L + i, padding leaves are 0). One sample descends log2(L)
  levels, vectorised over the batch inside a `lax.fori_loop`: O(batch * log N) per call. Writes
  set the leaves and then recompute each ancestor from its two children (not delta
  propagation), so the tree never accumulates float drift and duplicate ancestors are written
  with identical values. `eval/bench_buffers.py` measures it against an O(N) cumsum+searchsorted
  sampler; at capacity 200K, batch 256, on the shared 2-core dev CPU (best of 7, noisy):
  drawing the indices ~30-40 us vs ~0.9 ms naive, a learner's sample + update round ~0.16-0.28 ms
  vs ~1.0-1.4 ms, adding 256 items ~0.05-0.15 ms (uniform ~0.04-0.1 ms). Every tree read of a
  sample feeds its indices, and every write depends on the values written, so a sample followed
  by an update in one scan step updates the tree in place (no 2 MB copies; checked in the HLO).
* beta anneals linearly from beta0 to 1 over `beta_steps` *sample calls*; the counter lives in the
  state (so it survives checkpoints) and saturates at `beta_steps`. The reference adds 1e-5 per
  call from 0.4, i.e. beta_steps = 60_000, the default.
* Importance weights w_i = (N * P(i))^-beta / max_j w_j with N the number of filled slots and the
  max taken **over the sampled batch**. Then w_i = (min_batch p / p_i)^beta exactly: N and the
  total cancel, the weights are computed from two priorities in float32 without overflow, the
  largest weight in every batch is exactly 1 (so updates are only scaled down), and no min-tree
  over the whole buffer is needed. Normalising by the buffer-wide max instead (OpenAI baselines)
  would let one stale near-zero priority anywhere in 200K slots shrink every update; the price of
  the batch max is that the weights' scale varies a little from batch to batch (this is also
  what the HMARL reference and Dopamine do).
* `update_priorities` with duplicate indices (common: sampling is with replacement) keeps the
  **max** of the duplicates' priorities (computed with a sort, then written by one scatter whose
  duplicates carry equal values), so the result is deterministic on every backend, unlike "last
  write wins" with XLA scatters, whose order is unspecified. Indices outside the
  filled part are ignored; non-finite TD errors get `max_priority` rather than poisoning the root.
* A buffer shared by several learners (the HMARL team: TH, AT and RO train on one sampled batch)
  gets one priority per item: `combine_td_errors([td_th, td_at, td_ro], rule="mean")`.

Empty buffers: `sample`/`sample_prioritized` on an empty buffer return slot 0 (zeros) with weight
1; gate learning on `can_sample` (e.g. `lax.cond`) rather than relying on that.

Memory (`bytes_per_transition`, `buffer_bytes`)
-----------------------------------------------
The paper's transition: 4 agents' observations 64+128+64+96 = 352 floats, the same for the next
observations, actions 8+16+1+12 = 37 floats, reward and done (float32 each)::

    obs leaves float32: 2 * 352 * 4 + 37 * 4 + 4 + 4 = 2972 B/transition
        x 200_000 = 594.4 MB per seed, x 5 seeds = 2.97 GB
    obs leaves float16/bfloat16 (`obs_dtype=`): 2 * 352 * 2 + 148 + 8 = 1564 B/transition
        x 200_000 = 312.8 MB per seed, x 5 seeds = 1.56 GB
    PER adds the sum tree: 2 * 262_144 * 4 B = 2.1 MB per seed (~10.5 B/transition)

`obs_dtype` casts the floating leaves whose path names contain "obs" (override with `is_obs`) on
`add` and back to their original dtype on `sample`. float16 keeps ~3 significant digits and
overflows above 65504; bfloat16 keeps float32's range with ~2-3 digits. Observations that are
counts or fractions in [0, 1] are fine in float16; check before using it for large unnormalised
features. Rewards, dones and actions are never cast.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

PyTree = Any


# ----------------------------------------------------------------------------------------- states


@struct.dataclass
class ReplayState:
    """A uniform ring buffer.

    Attributes:
      storage: the item pytree with every leaf `[capacity, *leaf_shape]`, in its storage dtype.
      ptr: int32 `[]`, the slot the next item goes to.
      size: int32 `[]`, the number of filled slots (`<= capacity`); slots `[0, size)` are filled.
      capacity: static int.
      item_dtypes: static tuple, the items' original dtypes in `jax.tree.leaves` order (what
        `sample` casts back to).
    """

    storage: PyTree
    ptr: jax.Array
    size: jax.Array
    capacity: int = struct.field(pytree_node=False)
    item_dtypes: tuple = struct.field(pytree_node=False)


@struct.dataclass
class PrioritizedState:
    """A ring buffer with a sum tree of priorities.

    Attributes:
      replay: the `ReplayState` holding the items.
      tree: float32 `[2 * L]`, L = capacity rounded up to a power of two. `tree[1]` is the total
        priority, slot i's priority is `tree[L + i]` (0 while empty), `tree[0]` is unused.
      max_priority: float32 `[]`, the largest stored priority so far; new items get it.
      sample_count: int32 `[]`, `sample_prioritized` calls so far, saturating at `beta_steps`.
      alpha, eps, beta0, beta_steps: static hyper-parameters (see the module docstring).
    """

    replay: ReplayState
    tree: jax.Array
    max_priority: jax.Array
    sample_count: jax.Array
    alpha: float = struct.field(pytree_node=False)
    eps: float = struct.field(pytree_node=False)
    beta0: float = struct.field(pytree_node=False)
    beta_steps: int = struct.field(pytree_node=False)

    @property
    def size(self) -> jax.Array:
        return self.replay.size

    @property
    def ptr(self) -> jax.Array:
        return self.replay.ptr

    @property
    def capacity(self) -> int:
        return self.replay.capacity

    @property
    def num_leaves(self) -> int:
        return self.tree.shape[-1] // 2


class PrioritizedSample(NamedTuple):
    """What `sample_prioritized` returns besides the new state.

    Attributes:
      items: the item pytree, leaves `[batch, *leaf_shape]`, original dtypes.
      indices: int32 `[batch]`, slots to pass back to `update_priorities`.
      weights: float32 `[batch]`, importance weights normalised by their max over the batch.
      probs: float32 `[batch]`, sampling probabilities P(i).
      beta: float32 `[]`, the exponent used for `weights`.
    """

    items: PyTree
    indices: jax.Array
    weights: jax.Array
    probs: jax.Array
    beta: jax.Array


# --------------------------------------------------------------------------- storage and dtypes


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def default_is_obs(names: tuple) -> bool:
    """True when any key on a leaf's path contains "obs" ("obs", "next_obs", "observations")."""
    return any("obs" in n.lower() for n in names)


def _leaf_spec(x) -> tuple[tuple, np.dtype]:
    # Accept arrays, numpy scalars, Python numbers and jax.ShapeDtypeStruct alike.
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        shape, dtype = tuple(x.shape), x.dtype
    else:
        arr = np.asarray(x)
        shape, dtype = arr.shape, arr.dtype
    return shape, np.dtype(jax.dtypes.canonicalize_dtype(dtype))


def _storage_specs(example_item: PyTree, obs_dtype, is_obs):
    """Per leaf (flatten order): (shape, original dtype, storage dtype), plus the treedef."""
    is_obs = default_is_obs if is_obs is None else is_obs
    with_path, treedef = jax.tree_util.tree_flatten_with_path(example_item)
    if not with_path:
        raise ValueError("example_item has no array leaves")
    specs = []
    for path, leaf in with_path:
        shape, dtype = _leaf_spec(leaf)
        store = dtype
        if obs_dtype is not None and jnp.issubdtype(dtype, jnp.floating):
            if is_obs(tuple(_key_name(k) for k in path)):
                store = np.dtype(obs_dtype)
        specs.append((shape, dtype, store))
    return specs, treedef


def _num_leaves(capacity: int) -> int:
    return 1 << max(0, (capacity - 1).bit_length())


def init(example_item: PyTree, capacity: int, *, obs_dtype=None,
         is_obs: Optional[Callable[[tuple], bool]] = None) -> ReplayState:
    """An empty uniform buffer.

    Args:
      example_item: one transition (arrays, scalars or `jax.ShapeDtypeStruct`s); only shapes and
        dtypes are used.
      capacity: static number of slots.
      obs_dtype: optional storage dtype (e.g. `jnp.float16`) for floating observation leaves.
      is_obs: `names -> bool` choosing the observation leaves from the tuple of key names on the
        leaf's path; default: any name containing "obs".
    Returns:
      A `ReplayState` with leaves `[capacity, *leaf_shape]`, ptr = size = 0.
    """
    capacity = int(capacity)
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    specs, treedef = _storage_specs(example_item, obs_dtype, is_obs)
    storage = treedef.unflatten(
        [jnp.zeros((capacity,) + shape, store) for shape, _, store in specs])
    return ReplayState(storage=storage, ptr=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32),
                       capacity=capacity, item_dtypes=tuple(dtype for _, dtype, _ in specs))


def init_prioritized(example_item: PyTree, capacity: int, *, alpha: float = 0.6,
                     eps: float = 1e-6, beta0: float = 0.4, beta_steps: int = 60_000,
                     obs_dtype=None,
                     is_obs: Optional[Callable[[tuple], bool]] = None) -> PrioritizedState:
    """An empty prioritized buffer (see the module docstring for alpha, eps, beta0, beta_steps).

    Returns:
      A `PrioritizedState`: items as in `init`, an all-zero sum tree `[2 * L]`, max_priority 1,
      sample_count 0.
    """
    if not 0.0 <= beta0 <= 1.0:
        raise ValueError(f"beta0 must be in [0, 1], got {beta0}")
    replay = init(example_item, capacity, obs_dtype=obs_dtype, is_obs=is_obs)
    return PrioritizedState(
        replay=replay,
        tree=jnp.zeros((2 * _num_leaves(replay.capacity),), jnp.float32),
        max_priority=jnp.ones((), jnp.float32),
        sample_count=jnp.zeros((), jnp.int32),
        alpha=float(alpha), eps=float(eps), beta0=float(beta0), beta_steps=int(beta_steps))


def bytes_per_transition(example_item: PyTree, *, obs_dtype=None,
                         is_obs: Optional[Callable[[tuple], bool]] = None) -> int:
    """Bytes one stored transition takes (items only, no PER tree), with `obs_dtype` applied."""
    specs, _ = _storage_specs(example_item, obs_dtype, is_obs)
    return int(sum(int(np.prod(shape, dtype=np.int64)) * store.itemsize
                   for shape, _, store in specs))


def buffer_bytes(example_item: PyTree, capacity: int, *, prioritized: bool = False,
                 obs_dtype=None, is_obs: Optional[Callable[[tuple], bool]] = None) -> int:
    """Bytes of one seed's whole buffer state (items, counters and, if prioritized, the tree)."""
    total = capacity * bytes_per_transition(example_item, obs_dtype=obs_dtype, is_obs=is_obs)
    total += 2 * 4  # ptr, size
    if prioritized:
        total += 2 * _num_leaves(int(capacity)) * 4 + 2 * 4  # tree, max_priority, sample_count
    return int(total)


# ------------------------------------------------------------------------------- ring buffer core


def _add_batch_size(replay: ReplayState, items: PyTree) -> int:
    """Static n of an add, after checking every leaf is `[n, *stored_leaf_shape]`."""
    buf_leaves, buf_def = jax.tree.flatten(replay.storage)
    item_leaves, item_def = jax.tree.flatten(items)
    if buf_def != item_def:
        raise ValueError(f"items structure {item_def} does not match the buffer's {buf_def}")
    sizes = set()
    for buf, x in zip(buf_leaves, item_leaves):
        if tuple(jnp.shape(x))[1:] != tuple(buf.shape[1:]) or jnp.ndim(x) != buf.ndim:
            raise ValueError(f"item leaf of shape {jnp.shape(x)} does not fit storage "
                             f"{buf.shape}: expected [n, {', '.join(map(str, buf.shape[1:]))}]")
        sizes.add(int(jnp.shape(x)[0]))
    if len(sizes) != 1:
        raise ValueError(f"item leaves disagree on the batch size: {sorted(sizes)}")
    (n,) = sizes
    if n > replay.capacity:
        # Wrapped slots would repeat inside one scatter, whose order XLA leaves unspecified.
        raise ValueError(f"cannot add {n} items to a buffer of capacity {replay.capacity}")
    return n


def _write(replay: ReplayState, items: PyTree) -> tuple[ReplayState, jax.Array]:
    """Writes `[n, ...]` items at slots ptr, ptr+1, ... (mod capacity); returns the slots `[n]`."""
    n = _add_batch_size(replay, items)
    slots = (replay.ptr + jnp.arange(n, dtype=jnp.int32)) % replay.capacity
    storage = jax.tree.map(
        lambda buf, x: buf.at[slots].set(jnp.asarray(x).astype(buf.dtype), unique_indices=True),
        replay.storage, items)
    replay = replay.replace(storage=storage,
                            ptr=(replay.ptr + n) % replay.capacity,
                            size=jnp.minimum(replay.size + n, replay.capacity))
    return replay, slots


def gather_items(replay: ReplayState, indices: jax.Array) -> PyTree:
    """Items at `indices` `[batch]`, leaves `[batch, ...]`, cast back to the original dtypes."""
    leaves, treedef = jax.tree.flatten(replay.storage)
    out = [jnp.take(buf, indices, axis=0, mode="clip").astype(dtype)
           for buf, dtype in zip(leaves, replay.item_dtypes)]
    return treedef.unflatten(out)


def replay_of(state) -> ReplayState:
    """The storage part of a buffer (a `PrioritizedState`'s replay, or the `ReplayState` itself)."""
    return state.replay if isinstance(state, PrioritizedState) else state


def priority_part(state):
    """The small, learning-written part of a buffer: `(tree, max_priority, sample_count)` of a
    `PrioritizedState`, None for a uniform one. Update rounds carry only this part (and read the
    storage from outside their loop), so a scan or cond never copies the storage."""
    if isinstance(state, PrioritizedState):
        return (state.tree, state.max_priority, state.sample_count)
    return None


def with_priority_part(state, part):
    """`state` with its priority part replaced by `part` (from `priority_part`; None: unchanged)."""
    if part is None:
        return state
    tree, max_priority, sample_count = part
    return state.replace(tree=tree, max_priority=max_priority, sample_count=sample_count)


# ---------------------------------------------------------------------------------- public: both


def add(state, items: PyTree, priorities: Optional[jax.Array] = None):
    """Adds a batch of transitions, overwriting the oldest ones once full.

    Args:
      state: a `ReplayState` or a `PrioritizedState`.
      items: the item pytree with leaves `[n, *leaf_shape]`, static n <= capacity.
      priorities: prioritized buffers only: optional `[n]` raw priorities (same units as TD
        errors, stored as (|x| + eps)^alpha); default: `max_priority` for every new item.
    Returns:
      The new state of the same type.
    """
    if isinstance(state, PrioritizedState):
        return _add_prioritized(state, items, priorities)
    if priorities is not None:
        raise TypeError("priorities given to add() on a uniform ReplayState")
    return _write(state, items)[0]


def can_sample(state, batch_size: int) -> jax.Array:
    """bool `[]`: at least `batch_size` slots are filled (either buffer type)."""
    return replay_of(state).size >= batch_size


# -------------------------------------------------------------------------------- public: uniform


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> tuple[PyTree, jax.Array]:
    """Uniform sampling with replacement over the filled slots `[0, size)`.

    Returns:
      items with leaves `[batch_size, *leaf_shape]` (original dtypes), indices int32 `[batch_size]`.
    """
    if isinstance(state, PrioritizedState):
        raise TypeError("use sample_prioritized() on a PrioritizedState")
    indices = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1), jnp.int32)
    return gather_items(state, indices), indices


# ---------------------------------------------------------------------------- public: prioritized


def _to_priority(x: jax.Array, state: PrioritizedState) -> jax.Array:
    p = (jnp.abs(x).astype(jnp.float32) + state.eps) ** state.alpha
    # One NaN would make the root NaN and every later sample garbage.
    return jnp.where(jnp.isfinite(p), p, state.max_priority)


def _max_over_duplicates(indices: jax.Array, values: jax.Array) -> jax.Array:
    """`[k]`: each value replaced by the max of the values sharing its index (sort + segment max).

    After this, writing with one `.set` scatter is deterministic: duplicates carry equal values.
    """
    k = indices.shape[0]
    order = jnp.argsort(indices, stable=True)
    sorted_idx = indices[order]
    starts = jnp.concatenate([jnp.ones((1,), bool), sorted_idx[1:] != sorted_idx[:-1]])
    segment = jnp.cumsum(starts) - 1
    group_max = jax.ops.segment_max(values[order], segment, num_segments=k,
                                    indices_are_sorted=True)
    return jnp.zeros_like(values).at[order].set(group_max[segment], unique_indices=True)


def _set_leaves(tree: jax.Array, indices: jax.Array, priorities: jax.Array,
                valid: jax.Array, unique: bool = False) -> jax.Array:
    """Sets leaf `indices` `[k]` to `priorities` `[k]` where `valid`, then refreshes the ancestors.

    Duplicate indices keep the max. Each ancestor is recomputed from its children, so duplicates
    write equal values and no float error builds up. One `.set` scatter per level, and every
    write depends on the values it writes: XLA then updates the tree in place even when the same
    step read it for sampling (a zero-then-max-scatter made CPU XLA copy the 2 MB tree twice).
    """
    num_leaves = tree.shape[0] // 2
    if not unique:
        priorities = _max_over_duplicates(indices, priorities)
    leaf = indices.astype(jnp.int32) + num_leaves
    dropped = jnp.where(valid, leaf, tree.shape[0])  # out of bounds: the scatter drops it
    tree = tree.at[dropped].set(priorities, mode="drop")
    # Invalid entries walk slot 0's path instead: recomputing any ancestor is harmless.
    nodes = jnp.where(valid, leaf, num_leaves)

    def level(_, carry):
        tree, nodes = carry
        nodes = nodes // 2
        return tree.at[nodes].set(tree[2 * nodes] + tree[2 * nodes + 1]), nodes

    depth = num_leaves.bit_length() - 1
    tree, _ = jax.lax.fori_loop(0, depth, level, (tree, nodes))
    return tree


def _add_prioritized(state: PrioritizedState, items: PyTree,
                     priorities: Optional[jax.Array]) -> PrioritizedState:
    replay, slots = _write(state.replay, items)
    n = slots.shape[0]
    if priorities is None:
        p = jnp.full((n,), state.max_priority, jnp.float32)
    else:
        if jnp.shape(priorities) != (n,):
            raise ValueError(f"priorities must have shape ({n},), got {jnp.shape(priorities)}")
        p = _to_priority(jnp.asarray(priorities), state)
    tree = _set_leaves(state.tree, slots, p, jnp.ones((n,), bool), unique=True)
    return state.replace(replay=replay, tree=tree,
                         max_priority=jnp.maximum(state.max_priority, jnp.max(p)))


def current_beta(state: PrioritizedState) -> jax.Array:
    """float32 `[]`: beta0 + (1 - beta0) * min(sample_count / beta_steps, 1)."""
    if state.beta_steps <= 0:
        return jnp.ones((), jnp.float32)
    frac = jnp.minimum(state.sample_count.astype(jnp.float32) / state.beta_steps, 1.0)
    return (state.beta0 + (1.0 - state.beta0) * frac).astype(jnp.float32)


def descend(tree: jax.Array, mass: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Slot `[batch]` whose cumulative-priority interval holds each `mass` `[batch]`, and its
    priority `[batch]` (read on the way down, so every tree read feeds the indices and a later
    in-place update of the tree is ordered after them)."""
    num_leaves = tree.shape[0] // 2

    def level(_, carry):
        nodes, mass, _ = carry
        left = 2 * nodes
        left_sum, right_sum = tree[left], tree[left + 1]
        # `right_sum > 0`: a mass rounded up to the total must not walk into empty leaves.
        right = (mass >= left_sum) & (right_sum > 0)
        return (jnp.where(right, left + 1, left), jnp.where(right, mass - left_sum, mass),
                jnp.where(right, right_sum, left_sum))

    depth = num_leaves.bit_length() - 1
    init = (jnp.ones(mass.shape, jnp.int32), mass, jnp.broadcast_to(tree[1], mass.shape))
    nodes, _, priority = jax.lax.fori_loop(0, depth, level, init)
    return nodes - num_leaves, priority


def _is_weights(p: jax.Array, beta: jax.Array) -> jax.Array:
    """(N P(i))^-beta / max_batch (N P(j))^-beta == (min_batch p / p_i)^beta, `[batch]`."""
    p = jnp.maximum(p, jnp.finfo(jnp.float32).tiny)  # empty buffer: p = 0 -> weight 1
    return (jnp.min(p) / p) ** beta


def sample_prioritized(state: PrioritizedState, key: jax.Array,
                       batch_size: int) -> tuple[PrioritizedState, PrioritizedSample]:
    """Samples `batch_size` slots i.i.d. with P(i) = p_i / sum p; advances the beta counter.

    Cost O(batch_size * log2(capacity)) gathers from the tree, plus the item gather.

    Returns:
      (new state, `PrioritizedSample` with items `[batch, ...]`, indices/weights/probs `[batch]`).
    """
    total = state.tree[1]
    mass = jax.random.uniform(key, (batch_size,), jnp.float32) * total
    indices, p = descend(state.tree, mass)
    beta = current_beta(state)
    out = PrioritizedSample(items=gather_items(state.replay, indices), indices=indices,
                            weights=_is_weights(p, beta),
                            probs=p / jnp.maximum(total, jnp.finfo(jnp.float32).tiny), beta=beta)
    count = jnp.minimum(state.sample_count + 1, max(state.beta_steps, 0))
    return state.replace(sample_count=count), out


def mark_added(state: PrioritizedState, start: jax.Array, n: int) -> PrioritizedState:
    """Gives the `n` slots written from slot `start` on the priority `add` gives new items
    (`max_priority`), without writing items.

    For a second priority tree over the same storage (a learner that keeps its own priorities,
    `hmarl.shared_buffer: false`): `add` wrote the items and the first tree; `start` is the `ptr`
    before those adds, `n` (static) the number of items they wrote. A tree that missed them would
    never sample them (an all-zero tree samples slot 0 only).
    """
    capacity = state.capacity
    slots = (start + jnp.arange(min(n, capacity), dtype=jnp.int32)) % capacity
    p = jnp.full(slots.shape, state.max_priority, jnp.float32)
    return state.replace(tree=_set_leaves(state.tree, slots, p, jnp.ones(slots.shape, bool), unique=True))


def update_priorities(state: PrioritizedState, indices: jax.Array,
                      td_errors: jax.Array) -> PrioritizedState:
    """Sets the priorities of slots `indices` `[k]` to (|td_errors| + eps)^alpha, `[k]`.

    Duplicated indices keep the largest priority among them. Indices outside `[0, size)` are
    ignored. Non-finite TD errors are stored as `max_priority`.
    """
    indices = jnp.asarray(indices, jnp.int32)
    td_errors = jnp.asarray(td_errors)
    if td_errors.shape != indices.shape or indices.ndim != 1:
        raise ValueError(
            f"indices {indices.shape} and td_errors {td_errors.shape} must both be [k]")
    if indices.shape[0] == 0:
        return state
    valid = (indices >= 0) & (indices < state.size)
    p = _to_priority(td_errors, state)
    tree = _set_leaves(state.tree, indices, p, valid)
    new_max = jnp.max(jnp.where(valid, p, 0.0))
    return state.replace(tree=tree, max_priority=jnp.maximum(state.max_priority, new_max))


def slot_priorities(state: PrioritizedState) -> jax.Array:
    """float32 `[capacity]`: the stored priority of every slot (0 for empty slots)."""
    start = state.num_leaves
    return jax.lax.dynamic_slice_in_dim(state.tree, start, state.capacity, axis=-1)


def combine_td_errors(td_errors: Sequence[jax.Array], rule: str = "mean") -> jax.Array:
    """One TD error per item for a buffer shared by several learners.

    Each learner computes TD errors on the same sampled batch; this combines their absolute values
    (signed errors of different learners must not cancel).

    Args:
      td_errors: a sequence of arrays `[batch]` or `[batch, ...]` (e.g. per-agent errors), all with
        the same leading `batch`; trailing axes are reduced with the same rule.
      rule: "mean" (the HMARL reference: mean of the TH, AT and RO errors) or "max".
    Returns:
      float32 `[batch]`, non-negative, ready for `update_priorities`.
    """
    if rule not in ("mean", "max"):
        raise ValueError(f"rule must be 'mean' or 'max', got {rule!r}")
    if len(td_errors) == 0:
        raise ValueError("combine_td_errors needs at least one array")
    reduce = jnp.mean if rule == "mean" else jnp.max
    per_learner = [reduce(jnp.abs(jnp.asarray(td, jnp.float32)).reshape(jnp.shape(td)[0], -1),
                          axis=1) for td in td_errors]
    return reduce(jnp.stack(per_learner, axis=0), axis=0)
