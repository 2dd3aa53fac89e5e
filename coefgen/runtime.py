"""Runtime: load a table and turn answer counts into rewards (numpy only; torch lazy).

    table = coefgen.runtime.load("tables/kl-aqp-gamma0.75-max_mse4plugin-K16.json")
    counts = answer_counts(answers, group_ids)     # c_i: samples in i's group sharing i's answer
    rewards = table(counts)                        # t[c_i], same shape as counts

``answer_counts`` handles a whole batch at once; groups need not be contiguous (trainers such
as verl key samples by a per-prompt ``uid``). A count outside 1..K raises, never wraps.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from typing import Hashable, Sequence

import numpy as np

from . import payload as _payload


class TableError(ValueError):
    """A file that is not an intact coefgen table."""


class RewardTable:
    """A loaded table: ``values[c-1] = t_c``; calling it maps counts to rewards."""

    def __init__(self, payload: dict):
        self.payload = payload
        self.K: int = payload["K"]
        self.divergence: str = payload["divergence"]
        self.estimator: str = payload["estimator"]
        self.baseline: str = _payload.baseline_of(payload)  # the trainer's group baseline: none, loo, mean
        self.sha256: str = payload["sha256"]
        self.values = np.asarray(payload["values"], dtype=np.float64)
        self.values.setflags(write=False)
        # index 0 unused so that lookup is values_1[c]
        self._lookup = np.concatenate([[np.nan], self.values])

    def __repr__(self) -> str:
        return (f"RewardTable(divergence={self.divergence!r}, estimator={self.estimator!r}, K={self.K}, "
                f"baseline={self.baseline!r})")

    def rewards(self, counts):
        """t[c] for an integer array of counts in 1..K (any shape); torch in, torch out."""
        if _is_torch(counts):
            import torch  # lazy: torch is optional

            out = self.rewards(counts.detach().cpu().numpy())
            return torch.as_tensor(out, device=counts.device)
        c = np.asarray(counts)
        if c.dtype.kind not in "iu":
            if c.dtype.kind == "f" and np.all(np.isfinite(c)) and np.all(c == np.round(c)):
                c = c.astype(np.int64)
            elif c.size == 0:
                c = c.astype(np.int64)
            else:
                raise ValueError(f"counts must be integers, got dtype {c.dtype}")
        if c.size and (c.min() < 1 or c.max() > self.K):
            bad = c[(c < 1) | (c > self.K)].ravel()[0]
            raise ValueError(f"count {int(bad)} outside 1..K = {self.K} (table {self.divergence}/{self.estimator})")
        return self._lookup[c]

    __call__ = rewards

    def rewards_for(self, answers, group_ids=None):
        """Rewards for a batch of answers; groups by ``group_ids`` (or one group), each of size K."""
        counts, sizes = _counts_and_sizes(answers, group_ids)
        if sizes.size and np.any(sizes != self.K):
            raise ValueError(f"a group has {int(sizes[sizes != self.K][0])} samples but the table is for K = {self.K}; "
                             "every group must hold exactly K samples (in multi-process training, gather the groups first)")
        return self.rewards(counts)


class TableFamily:
    """Tables of one reward and one trainer baseline for several group sizes: each group is
    scored with the table of its own size k (a group of k i.i.d. samples is a k-sample group).

    Under a group baseline (loo, mean) a group of 1 or 2 samples carries no count signal (every
    advantage in it is 0 whatever the rewards), so such groups get reward 0.0 without a table."""

    def __init__(self, tables):
        tables = list(tables)
        if not tables:
            raise ValueError("a table family needs at least one table")
        for t in tables:
            if not isinstance(t, RewardTable):
                raise TypeError(f"a table family holds RewardTables, got {type(t).__name__}")
        first = tables[0]
        by_k: dict[int, RewardTable] = {}
        for t in tables:
            if (t.divergence, t.baseline) != (first.divergence, first.baseline):
                raise ValueError(f"a table family holds one reward and one baseline: {first.divergence}/{first.baseline} "
                                 f"and {t.divergence}/{t.baseline} differ")
            if t.K in by_k and by_k[t.K].sha256 != t.sha256:
                raise ValueError(f"two different tables for group size {t.K}")
            by_k[t.K] = t
        self.divergence: str = first.divergence
        self.baseline: str = first.baseline
        self._by_k = dict(sorted(by_k.items()))
        self.sizes: tuple = tuple(self._by_k)
        self.K: int = self.sizes[-1]

    def __repr__(self) -> str:
        return f"TableFamily(divergence={self.divergence!r}, baseline={self.baseline!r}, sizes={_ranges(self.sizes)})"

    def signal_free(self, k: int) -> bool:
        """True for a group size whose advantages are 0 whatever the rewards (k <= 2 under loo/mean)."""
        return self.baseline != "none" and 1 <= k <= 2

    def table_for(self, k: int) -> RewardTable:
        """The table for groups of k samples; ValueError naming the sizes the family holds."""
        t = self._by_k.get(int(k))
        if t is None:
            if k > self.K:
                raise ValueError(f"a group has {k} samples, more than the largest table of this family "
                                 f"(K = {self.K}; sizes {_ranges(self.sizes)})")
            raise ValueError(f"a group has {k} samples and this family has no table for that size "
                             f"(sizes {_ranges(self.sizes)})")
        return t

    def rewards_for(self, answers, group_ids=None) -> np.ndarray:
        """t_k[c_i] for a flat batch: c_i counted in i's group, k = the size of i's group."""
        counts, sizes = _counts_and_sizes(answers, group_ids)
        out = np.zeros(counts.shape, dtype=np.float64)
        for k in np.unique(sizes):
            k = int(k)
            if self.signal_free(k):
                continue  # reward 0.0: every advantage in such a group is 0
            sel = sizes == k
            out[sel] = self.table_for(k).rewards(counts[sel])
        return out


def _ranges(sizes) -> str:
    """'2..8, 16' for (2, 3, ..., 8, 16)."""
    parts, run = [], []
    for k in sizes:
        if run and k == run[-1] + 1:
            run.append(k)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}..{run[-1]}")
        run = [k]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}..{run[-1]}")
    return ", ".join(parts)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _codes(items) -> np.ndarray:
    """Integer codes of a sequence: equal items ↔ equal codes (ints pass through np.unique)."""
    if not isinstance(items, np.ndarray) and all(isinstance(x, (int, np.integer)) for x in items):
        items = np.asarray(items, dtype=np.int64)
    if isinstance(items, np.ndarray) and items.dtype.kind in "iub" and items.ndim == 1:
        return np.unique(items, return_inverse=True)[1].reshape(-1)
    index: dict[Hashable, int] = {}
    return np.fromiter((index.setdefault(x, len(index)) for x in items), dtype=np.int64, count=len(items))


def _counts_and_sizes(answers, group_ids=None):
    answers = list(answers) if not isinstance(answers, np.ndarray) else answers
    n = len(answers)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    a = _codes(answers)
    if group_ids is None:
        g = np.zeros(n, dtype=np.int64)
    else:
        if len(group_ids) != n:
            raise ValueError(f"{len(group_ids)} group ids for {n} answers")
        g = _codes(group_ids if isinstance(group_ids, np.ndarray) else list(group_ids))
    pair = g.astype(np.int64) * (int(a.max()) + 1) + a
    _, pair_inv, pair_count = np.unique(pair, return_inverse=True, return_counts=True)
    _, g_inv, g_count = np.unique(g, return_inverse=True, return_counts=True)
    return pair_count[pair_inv.reshape(-1)], g_count[g_inv.reshape(-1)]


def answer_counts(answers: Sequence, group_ids: Sequence | None = None) -> np.ndarray:
    """c_i = #{j in i's group : answer_j == answer_i} for a flat batch (hashables or int ids).

    ``group_ids`` (e.g. verl's per-sample uid) assign samples to groups, in any order;
    without it the whole sequence is one group."""
    return _counts_and_sizes(answers, group_ids)[0]


def grouped_counts(answers) -> np.ndarray:
    """Counts for a 2-D array of integer answer ids, one group per row (n_groups, K)."""
    a = np.asarray(answers)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (n_groups, K) array, got shape {a.shape}")
    return (a[:, :, None] == a[:, None, :]).sum(axis=2)


def read_regular(path, limit: int = _payload.MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; TableError otherwise
    (devices, FIFOs, directories and oversized files are refused before reading)."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise TableError(f"{_short(path)}: cannot read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TableError(f"{_short(path)}: not a regular file")
        if st.st_size > limit:
            raise TableError(f"{_short(path)}: {st.st_size} bytes, over the {limit >> 20} MiB limit of a table file")
        with os.fdopen(fd, "rb") as fh:
            fd = None
            data = fh.read(limit + 1)
    except OSError as e:
        raise TableError(f"{_short(path)}: cannot read ({e.strerror})") from None
    finally:
        if fd is not None:
            os.close(fd)
    if len(data) > limit:
        raise TableError(f"{_short(path)}: over the {limit >> 20} MiB limit of a table file")
    return data


def _short(text, limit: int = 200) -> str:
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def load(path) -> RewardTable:
    """Load a JSON or NPZ table; check schema and sha256; refuse corrupted or foreign files.

    Refused on form (TableError, as ``coefgen verify`` does): non-regular or oversized files,
    invalid or ambiguous JSON (duplicate keys, huge integers, deep nesting), NPZ members
    other than payload/values or over the size cap, values not float64 of shape (K,),
    K outside 2..2048 (the CLI's range), a wrong sha256."""
    path = os.fspath(path)
    data = read_regular(path)
    if data[:2] == b"PK":
        payload = _payload_from_npz(path, data)
    else:
        try:
            payload = _payload.parse_json(data, _short(path))
        except ValueError as e:
            raise TableError(f"not a coefgen table: {e}") from None
    try:
        _payload.validate(payload, _short(path))
    except ValueError as e:
        raise TableError(str(e)) from None
    return RewardTable(payload)


NPZ_MEMBERS = ("payload.npy", "values.npy")


def _npz_member(zf, name: str, path: str) -> np.ndarray:
    info = zf.getinfo(name)
    if info.file_size > _payload.MAX_FILE_BYTES:
        raise TableError(f"{_short(path)}: NPZ member {name} expands to {info.file_size} bytes, "
                         f"over the {_payload.MAX_FILE_BYTES >> 20} MiB limit")
    with zf.open(info) as fh:
        raw = fh.read(_payload.MAX_FILE_BYTES + 1)  # never trust the stated size alone
    if len(raw) > _payload.MAX_FILE_BYTES:
        raise TableError(f"{_short(path)}: NPZ member {name} over the {_payload.MAX_FILE_BYTES >> 20} MiB limit")
    return np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)


def _payload_from_npz(path: str, data: bytes) -> dict:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = sorted(zf.namelist())
            if names != sorted(NPZ_MEMBERS):
                raise TableError(f"{_short(path)}: not a coefgen table (NPZ members must be exactly "
                                 f"{', '.join(NPZ_MEMBERS)}; found {_short(', '.join(names), 120)})")
            text_arr = _npz_member(zf, "payload.npy", path)
            values = _npz_member(zf, "values.npy", path)
    except TableError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError,
            RuntimeError) as e:
        raise TableError(f"{_short(path)}: not a readable NPZ table ({_short(e, 120)})") from None
    if text_arr.shape != () or text_arr.dtype.kind != "U":
        raise TableError(f"{_short(path)}: NPZ payload must be a 0-d unicode string, got {text_arr.dtype} {text_arr.shape}")
    if values.dtype != np.dtype("<f8") or values.ndim != 1:
        raise TableError(f"{_short(path)}: NPZ values must be a 1-d float64 array, got {values.dtype} {values.shape}")
    try:
        payload = _payload.parse_json(str(text_arr[()]), _short(path) + " (NPZ payload)")
    except ValueError as e:
        raise TableError(f"not a coefgen table: {e}") from None
    try:
        stated = np.asarray(payload.get("values", []), dtype=np.float64) if isinstance(payload, dict) else None
    except (TypeError, ValueError, OverflowError):
        stated = None
    if stated is None or stated.shape != values.shape or not np.array_equal(stated.view(np.uint64), values.view(np.uint64)):
        raise TableError(f"{path}: NPZ values array differs from its payload (file altered)")
    return payload
