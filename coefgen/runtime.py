"""Runtime: load a table and turn answer counts into rewards (numpy only; torch lazy).

    table = coefgen.runtime.load("tables/kl-aqp-gamma0.75-max_mse4plugin-K16.json")
    counts = answer_counts(answers, group_ids)     # c_i: samples in i's group sharing i's answer
    rewards = table(counts)                        # t[c_i], same shape as counts

``answer_counts`` handles a whole batch at once; groups need not be contiguous (trainers such
as verl key samples by a per-prompt ``uid``). A count outside 1..K raises, never wraps.

Missing answers and group keys (one rule in every layer, the integrations included):

* an answer that is ``None`` or a NaN (``float('nan')``, ``np.nan``, a numpy NaN scalar, a
  ``Decimal`` NaN) is "no answer": it matches nothing, not even another missing answer, so it
  counts as a singleton (c = 1) and raises nobody else's count; callers may give such samples
  a fixed ``invalid_reward`` instead of t[1];
* a group key (a verl uid, a group id) that is ``None`` or NaN is refused (ValueError);
* answers and keys are compared as Python objects: ``1`` and ``"1"`` differ, ``1`` and ``1.0``
  are equal (as Python says); numpy scalars compare as their Python values.

``default_table``/``default_family`` load the default table set shipped inside the package;
``compose_rewards`` combines t[c] with a task reward for the three objectives of ``OBJECTIVES``.
"""

from __future__ import annotations

import decimal
import functools
import hashlib
import io
import math
import os
import stat
import zipfile
from pathlib import Path
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

    def rewards_for(self, answers, group_ids=None, invalid_reward=None) -> np.ndarray:
        """Rewards for a batch of answers; groups by ``group_ids`` (or one group), each of size K.

        Missing answers (None, NaN) are singletons, or get ``invalid_reward`` when given."""
        counts, sizes, missing = _counts_sizes_missing(answers, group_ids)
        if sizes.size and np.any(sizes != self.K):
            raise ValueError(f"a group has {int(sizes[sizes != self.K][0])} samples but the table is for K = {self.K}; "
                             "every group must hold exactly K samples (in multi-process training, gather the groups first)")
        out = np.asarray(self.rewards(counts), dtype=np.float64)
        return _fill_invalid(out, missing, invalid_reward)


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

    def check_sizes(self, sizes) -> None:
        """ValueError (naming the sizes the family holds) unless every group size in ``sizes``
        can be scored: a size of the family, or a signal-free size under loo/mean."""
        for k in sorted({int(k) for k in np.asarray(sizes).reshape(-1).tolist()}):
            if not self.signal_free(k):
                self.table_for(k)

    def rewards_for(self, answers, group_ids=None, invalid_reward=None) -> np.ndarray:
        """t_k[c_i] for a flat batch: c_i counted in i's group, k = the size of i's group.

        Missing answers (None, NaN) are singletons, or get ``invalid_reward`` when given (in a
        signal-free group too). Every size is checked before any reward is computed."""
        counts, sizes, missing = _counts_sizes_missing(answers, group_ids)
        self.check_sizes(sizes)
        out = np.zeros(counts.shape, dtype=np.float64)
        for k in np.unique(sizes):
            k = int(k)
            if self.signal_free(k):
                continue  # reward 0.0: every advantage in such a group is 0
            sel = sizes == k
            out[sel] = self.table_for(k).rewards(counts[sel])
        return _fill_invalid(out, missing, invalid_reward)

    @classmethod
    def of(cls, table) -> "TableFamily":
        """A family from a TableFamily (itself), a RewardTable (a family of one size) or a path."""
        if isinstance(table, TableFamily):
            return table
        if isinstance(table, RewardTable):
            return cls([table])
        if isinstance(table, (str, os.PathLike)):
            return cls([load(table)])
        raise TypeError(f"expected a RewardTable, a TableFamily or a path to a table file, got {type(table).__name__}")


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


def is_missing(x) -> bool:
    """True for "no answer": None or any NaN (float, numpy, complex, Decimal)."""
    if x is None:
        return True
    if isinstance(x, (float, complex, np.floating, np.complexfloating)):
        return x != x
    if isinstance(x, decimal.Decimal):
        return x.is_nan()
    return False


def _plain(x):
    """numpy scalars and 0-d arrays (numpy or torch) as the Python value they hold."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return x.item()
    if _is_torch(x) and getattr(x, "ndim", None) == 0:
        return x.item()
    return x


def _array_codes(items: np.ndarray, what: str):
    """(codes, missing mask) of a 1-D numpy array of a plain dtype, or None (use the object path)."""
    if items.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence, got an array of shape {items.shape}")
    if items.dtype.kind in "iubUS":
        return np.unique(items, return_inverse=True)[1].reshape(-1), np.zeros(len(items), dtype=bool)
    if items.dtype.kind == "f":
        missing = np.isnan(items)
        codes = np.empty(len(items), dtype=np.int64)
        if (~missing).any():
            codes[~missing] = np.unique(items[~missing], return_inverse=True)[1].reshape(-1)
        start = int(codes[~missing].max()) + 1 if (~missing).any() else 0
        codes[missing] = start + np.arange(int(missing.sum()))
        return codes, missing
    return None


def _object_codes(items, what: str):
    """(codes, missing mask): equal items (as Python compares them) ↔ equal codes; every
    missing item (None/NaN) gets a fresh code of its own."""
    n = len(items)
    codes = np.empty(n, dtype=np.int64)
    missing = np.zeros(n, dtype=bool)
    index: dict = {}
    for i, x in enumerate(items):
        x = _plain(x)
        if is_missing(x):
            missing[i] = True
            codes[i] = len(index)
            index[object()] = len(index)  # a key equal to nothing else
            continue
        try:
            codes[i] = index.setdefault(x, len(index))
        except TypeError:
            raise TypeError(f"{what} must be hashable: item {i} is a {type(x).__name__}") from None
    return codes, missing


def _codes_missing(items, what: str = "answers"):
    if isinstance(items, np.ndarray):
        done = _array_codes(items, what)
        if done is not None:
            return done
        items = items.tolist() if items.dtype.kind != "O" else list(items)
    elif not isinstance(items, (list, tuple)):
        items = list(items)
    if items and all(type(x) is int for x in items):
        try:
            arr = np.asarray(items, dtype=np.int64)
        except OverflowError:
            pass  # ints beyond int64: compared as Python objects below
        else:
            return np.unique(arr, return_inverse=True)[1].reshape(-1), np.zeros(len(items), dtype=bool)
    return _object_codes(items, what)


def answer_codes(answers) -> np.ndarray:
    """Integer codes of answers: equal answers ↔ equal codes; a missing answer (None, NaN)
    gets a code of its own (it matches nothing, not even another missing answer)."""
    return _codes_missing(answers, "answers")[0]


def group_codes(keys) -> np.ndarray:
    """Integer codes of group keys (uids): equal keys ↔ equal codes, compared as Python objects
    (1 and "1" differ); a None or NaN key raises ValueError."""
    codes, missing = _codes_missing(keys, "group keys")
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        key = keys[i]
        raise ValueError(f"group key {i} is {key!r}: a sample needs a group key (None and NaN are refused, "
                         "never merged into one group)")
    return codes


def _counts_sizes_missing(answers, group_ids=None):
    if not isinstance(answers, np.ndarray):
        answers = list(answers)
    n = len(answers)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0, dtype=bool)
    a, missing = _codes_missing(answers, "answers")
    if group_ids is None:
        g = np.zeros(n, dtype=np.int64)
    else:
        if not isinstance(group_ids, np.ndarray):
            group_ids = list(group_ids)
        if len(group_ids) != n:
            raise ValueError(f"{len(group_ids)} group ids for {n} answers")
        g = group_codes(group_ids)
    pair = g.astype(np.int64) * (int(a.max()) + 1) + a
    _, pair_inv, pair_count = np.unique(pair, return_inverse=True, return_counts=True)
    _, g_inv, g_count = np.unique(g, return_inverse=True, return_counts=True)
    return pair_count[pair_inv.reshape(-1)], g_count[g_inv.reshape(-1)], missing


def _counts_and_sizes(answers, group_ids=None):
    return _counts_sizes_missing(answers, group_ids)[:2]


def _fill_invalid(out: np.ndarray, missing: np.ndarray, invalid_reward) -> np.ndarray:
    if invalid_reward is not None and missing.any():
        value = float(invalid_reward)
        if not math.isfinite(value):
            raise ValueError(f"invalid_reward must be a finite number, got {invalid_reward!r}")
        out[missing] = value
    return out


def answer_counts(answers: Sequence, group_ids: Sequence | None = None) -> np.ndarray:
    """c_i = #{j in i's group : answer_j == answer_i} for a flat batch (hashables or int ids).

    ``group_ids`` (e.g. verl's per-sample uid) assign samples to groups, in any order;
    without it the whole sequence is one group. A missing answer (None, NaN) has c = 1;
    a None/NaN group id raises (see the module docstring)."""
    return _counts_and_sizes(answers, group_ids)[0]


def grouped_counts(answers) -> np.ndarray:
    """Counts for a 2-D array of answers, one group per row (n_groups, K): integer ids (fast
    path), floats (NaN: a missing answer, c = 1) or objects (the module's rule, row by row)."""
    a = np.asarray(answers)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (n_groups, K) array, got shape {a.shape}")
    if a.dtype.kind in "iubUS":
        return (a[:, :, None] == a[:, None, :]).sum(axis=2)
    if a.dtype.kind == "f":
        counts = (a[:, :, None] == a[:, None, :]).sum(axis=2)
        counts[np.isnan(a)] = 1  # NaN equals nothing, itself included: a singleton
        return counts
    rows = [answer_counts(list(row)) for row in a]
    return np.array(rows, dtype=np.int64).reshape(a.shape)


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
    return _load_bytes(read_regular(path), path)


def _load_bytes(data: bytes, path: str) -> RewardTable:
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


# ---------------------------------------------------------------------------------------------
# The default table set shipped inside the package

DEFAULT_TABLES_DIR = Path(__file__).resolve().parent / "default_tables"
"""Where ``default_table``/``default_family`` read the default set: JSON tables + manifest.json."""


def _baseline_of_record(record: dict) -> str:
    """The baseline of a manifest record: its inputs' ``baseline`` (or params'), else the table id's
    ``-loo-K``/``-mean-K`` part, else none (files of schema /1 have no baseline)."""
    inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    params = inputs.get("params") if isinstance(inputs.get("params"), dict) else {}
    for source in (inputs, params):
        if isinstance(source.get("baseline"), str):
            return source["baseline"]
    tid = str(record.get("table_id", ""))
    for b in _payload.BASELINES[1:]:
        if f"-{b}-K" in tid:
            return b
    return "none"


@functools.lru_cache(maxsize=8)
def _default_index(directory: str, stamp) -> dict:
    """{(divergence, K, baseline): (spec entry index, position, file name, sha256)} from manifest.json,
    keeping per key the table the default spec lists first."""
    manifest = os.path.join(directory, "manifest.json")
    try:
        data = read_regular(manifest)
    except TableError as e:
        raise TableError(f"the default table set is not installed ({e})") from None
    try:
        doc = _payload.parse_json(data, "default set manifest.json")
    except ValueError as e:
        raise TableError(str(e)) from None
    if not isinstance(doc, dict) or doc.get("schema") != _payload.MANIFEST_SCHEMA or not isinstance(doc.get("files"), list):
        raise TableError(f"{_short(manifest)}: not a coefgen manifest (schema {_payload.MANIFEST_SCHEMA})")
    index: dict = {}
    for pos, rec in enumerate(doc["files"]):
        if not isinstance(rec, dict) or rec.get("format") != "json":
            continue
        inputs, entry = rec.get("inputs"), rec.get("entry")
        name, digest = rec.get("path"), rec.get("sha256")
        if not (isinstance(inputs, dict) and isinstance(entry, dict) and isinstance(name, str) and isinstance(digest, str)):
            raise TableError(f"{_short(manifest)}: malformed record {pos}")
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise TableError(f"{_short(manifest)}: record {pos} names {_short(name, 80)!r}, not a file of the set")
        K, div, order = inputs.get("K"), inputs.get("divergence"), entry.get("index", 0)
        if not isinstance(K, int) or not isinstance(div, str) or not isinstance(order, int):
            raise TableError(f"{_short(manifest)}: malformed record {pos}")
        key = (div, K, _baseline_of_record(rec))
        if key not in index or (order, pos) < index[key][:2]:
            index[key] = (order, pos, name, digest)
    return index


def _stamp(directory: str):
    """Cache key of a set's manifest: a replaced or edited manifest is read again."""
    try:
        st = os.stat(os.path.join(directory, "manifest.json"))
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        return None


def _check_default_args(divergence, K, baseline):
    if not isinstance(divergence, str):
        raise TypeError(f"divergence must be a string such as 'kl', got {type(divergence).__name__}")
    if K is None:
        raise TypeError("K (the group size) is required, e.g. default_table('kl', K=8)")
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)):
        raise TypeError(f"K must be an integer, got {K!r}")
    if baseline not in _payload.BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(_payload.BASELINES)} (the trainer's group baseline), "
                         f"got {baseline!r}")
    return int(K)


def _default_record(directory: str, divergence: str, K: int, baseline: str):
    index = _default_index(directory, _stamp(directory))
    found = index.get((divergence, K, baseline))
    if found is None:
        divs = sorted({d for d, _, _ in index})
        if divergence not in divs:
            raise ValueError(f"the default set has no {divergence!r} tables (it has {', '.join(divs)})")
        sizes = sorted(k for d, k, b in index if d == divergence and b == baseline)
        have = f"K = {_ranges(sizes)}" if sizes else "none at all"
        raise ValueError(f"the default set has no {divergence} table with baseline {baseline!r} for K = {K} "
                         f"({divergence}/{baseline} tables: {have})")
    return found[2], found[3]


@functools.lru_cache(maxsize=4096)
def _load_default(path: str, file_stamp, digest: str) -> RewardTable:
    data = read_regular(path)
    if hashlib.sha256(data).hexdigest() != digest:
        raise TableError(f"{_short(path)}: sha256 differs from the default set's manifest.json (file altered)")
    return _load_bytes(data, path)


def default_table(divergence: str = "kl", K: int | None = None, baseline: str = "none") -> RewardTable:
    """The default set's table for ``divergence`` at group size ``K`` made for the trainer's
    group ``baseline`` ("none", "loo" or "mean"), from the set shipped inside the package.

    Which table: per (divergence, K, baseline) the one the default spec lists first (for kl:
    the aqp table chosen by the game, ``max_mse 4plugin, gamma 0.75`` for K <= 256 and
    ``max_mse 4plugin`` at 512 and 1024; the minimax tables come later in the spec). The file is
    checked against the sha256 in the set's manifest.json and against its own seal."""
    K = _check_default_args(divergence, K, baseline)
    directory = os.fspath(DEFAULT_TABLES_DIR)
    name, digest = _default_record(directory, divergence, K, baseline)
    path = os.path.join(directory, name)
    try:
        st = os.stat(path)
        file_stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        file_stamp = None  # read_regular names the problem
    table = _load_default(path, file_stamp, digest)  # re-read (and re-checked) when the file changes
    if (table.divergence, table.K, table.baseline) != (divergence, K, baseline):
        raise TableError(f"{_short(path)}: holds {table.divergence}/K={table.K}/baseline {table.baseline}, "
                         f"not the {divergence}/K={K}/baseline {baseline} its manifest record states")
    return table


def default_family(divergence: str = "kl", K: int | None = None, baseline: str = "none") -> TableFamily:
    """The default set's tables for every group size up to ``K`` (from 2 with baseline "none",
    from 3 with "loo"/"mean": smaller groups carry no signal under a group baseline), as a
    ``TableFamily``; K itself must be in the set (sizes the set lacks below K are left out and
    such groups are refused by the family, naming its sizes)."""
    K = _check_default_args(divergence, K, baseline)
    default_table(divergence, K, baseline)  # K itself must exist: the clear error
    directory = os.fspath(DEFAULT_TABLES_DIR)
    index = _default_index(directory, _stamp(directory))
    lo = 2 if baseline == "none" else 3
    sizes = sorted(k for d, k, b in index if d == divergence and b == baseline and lo <= k <= K)
    return TableFamily([default_table(divergence, k, baseline) for k in sizes])


# ---------------------------------------------------------------------------------------------
# Composition with a task reward

OBJECTIVES = ("kl_regularized", "entropy_bonus", "consensus")


def compose_rewards(table_rewards, objective: str, beta: float = 1.0, task_rewards=None, log_p_ref=None):
    """The per-sample reward a trainer maximises, from t[c] and a task reward R.

    ``table_rewards`` are the t[c_i] (an estimate of log p(answer_i) for a kl table, of the
    divergence's r(p) in general); ``task_rewards`` R_i (default 0); ``log_p_ref`` the reference
    log-probability of each sample's answer (default 0, a uniform reference; ``kl_regularized``
    only). The trainer *maximises* the result:

    * ``"kl_regularized"``: R + beta*log_p_ref - beta*t[c]. With a kl table this is the answer-level
      objective max E_p[R] - beta*KL(p || p_ref); its optimum is q ∝ p_ref*exp(R/beta).
    * ``"entropy_bonus"``: R - beta*t[c] (an entropy / diversity bonus: rare answers are
      rewarded; kl: max E_p[R] + beta*H(p)).
    * ``"consensus"``: R + beta*t[c] (agreement with the group is rewarded, as in self-rewarding /
      majority-vote recipes; sharpens p towards its mode).

    ``beta`` must be finite and > 0; every value finite; all arrays of one length. numpy in,
    numpy float64 out (torch in, torch out)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)} (it fixes the sign of t[c]), got {objective!r}")
    if _is_torch(table_rewards):
        import torch  # lazy

        out = compose_rewards(table_rewards.detach().cpu().numpy(), objective, beta,
                              None if task_rewards is None else _numpy(task_rewards),
                              None if log_p_ref is None else _numpy(log_p_ref))
        return torch.as_tensor(out, device=table_rewards.device)
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a number, got {beta!r}") from None
    if isinstance(beta, bool) or not (math.isfinite(b) and b > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    t = _finite_array(table_rewards, "table_rewards")
    R = np.zeros_like(t) if task_rewards is None else _finite_array(task_rewards, "task_rewards", t.shape)
    if log_p_ref is not None and objective != "kl_regularized":
        raise ValueError(f"log_p_ref is the reference of the kl_regularized objective; objective {objective!r} has none")
    if objective == "kl_regularized":
        lp = np.zeros_like(t) if log_p_ref is None else _finite_array(log_p_ref, "log_p_ref", t.shape)
        return R + b * lp - b * t
    if objective == "entropy_bonus":
        return R - b * t
    return R + b * t


def _numpy(x):
    return x.detach().cpu().numpy() if _is_torch(x) else x


def _finite_array(x, name: str, shape=None) -> np.ndarray:
    try:
        a = np.asarray(_numpy(x), dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers") from None
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, the table rewards {shape}")
    if not np.all(np.isfinite(a)):
        i = int(np.flatnonzero(~np.isfinite(a.reshape(-1)))[0])
        raise ValueError(f"{name}[{i}] is {a.reshape(-1)[i]}: every value must be finite")
    return a
