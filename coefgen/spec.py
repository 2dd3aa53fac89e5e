"""Table-set spec (``coefgen.yaml``, DESIGN §9): load, validate, expand into table requests.

The YAML is read with PyYAML's *safe* loader, but composed into a node tree first so that
every error names ``file:line``. Everything is checked before any solving: unknown keys,
wrong types, bad K ranges, impossible combinations (``compiler.precheck`` on every table)
and duplicate tables across entries (an error naming both lines: one table, one entry).

    output: tables            # directory, relative to this file
    formats: [json, npz, c]
    tables:
      - divergence: kl
        estimator: aqp
        tau: 10               # estimator parameters sit beside the estimator
        K: [2..64, 128]       # a range 'a..b', an integer, or a list of both
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from importlib import resources

import yaml

from .errors import InputError
from .payload import BASELINES, canonical_json

TOP_KEYS = ("output", "formats", "tables")
PARAM_KEYS = ("tau", "objective", "max_mse", "gamma", "monotone")
ENTRY_KEYS = ("divergence", "estimator", "K", "baseline") + PARAM_KEYS
FORMATS = ("json", "npz", "c")
DEFAULT_SPEC_NAME = "default_spec.yaml"
# Resource caps, checked before anything is expanded or solved (InputError naming the cap):
MAX_SPEC_BYTES = 1 << 20       # the spec file
MAX_YAML_NODES = 100_000       # distinct nodes of the composed YAML tree
MAX_TABLES = 10_000            # tables a spec may ask for
MAX_WORK = 2.0e9               # sum of TableRequest.cost() (~ (1+K)^2 x estimator weight) over the set
MAX_INT_CHARS = 40             # an integer written in the spec (K: 900000 digits is refused before converting)
_STANDARD_TAGS = {"tag:yaml.org,2002:" + t for t in
                  ("str", "int", "float", "bool", "null", "seq", "map")}
DEFAULT_SPEC_SOURCE = "<embedded default spec>"


@dataclass(frozen=True)
class TableRequest:
    """One table of the set: what to solve and where it came from."""

    table_id: str
    divergence: str  # canonical reward name
    estimator: str
    params: dict  # full (normalized) estimator parameters, as compile_table accepts them
    K: int
    entry: dict  # {"index": i, "divergence": [...], "estimator": e, "K": "...", params}
    line: int  # line of the entry's K (for messages)
    baseline: str = "none"  # the trainer's group baseline (loo, mean: built from the K-1 table)

    @property
    def inputs(self) -> dict:
        """Everything that determines the table's bytes besides the coefgen version."""
        out = {"divergence": self.divergence, "estimator": self.estimator,
               "params": {k: v for k, v in self.params.items() if v is not None}, "K": self.K}
        if self.baseline != "none":
            out["baseline"] = self.baseline
        return out

    @property
    def inner(self) -> "TableRequest":
        """The no-baseline request at K − 1 that a loo/mean table is built from."""
        from .writers import table_id
        from . import compiler

        return TableRequest(
            table_id=table_id(self.divergence, self.estimator, compiler.key_params(self.estimator, self.params), self.K - 1),
            divergence=self.divergence, estimator=self.estimator, params=self.params, K=self.K - 1,
            entry=self.entry, line=self.line)

    @functools.cached_property
    def inputs_key(self) -> str:
        return hashlib.sha256(canonical_json(self.inputs).encode("utf-8")).hexdigest()

    @property
    def lookup_estimator(self) -> str:
        """Estimator key of the aggregate C lookup: ``aqp`` or ``aqp-tau5`` (non-default params)."""
        head, _, _ = self.table_id.rpartition("-K")
        slug_len = len(_slug(self.divergence)) + 1
        return head[slug_len:]

    def cost(self) -> float:
        """Rough relative solve cost (for scheduling big tables first, the ETA and MAX_WORK)."""
        return _cost(self.estimator, self.K)


@dataclass
class Spec:
    source: str  # path of the spec file, or DEFAULT_SPEC_SOURCE
    output: str  # output directory (absolute, or relative to the cwd for the embedded default)
    formats: tuple
    tables: list = field(default_factory=list)  # list[TableRequest], spec order


def _cost(estimator: str, K: int) -> float:
    w = {"exact": 0.02, "plugin": 0.05, "digamma": 0.05, "minimax": 1.0, "aqp": 1.5}.get(estimator, 1.0)
    return w * (1.0 + K) ** 2


def _slug(divergence: str) -> str:
    return divergence.replace(":", "").replace("/", "over").replace(",", "_")


class _Ctx:
    def __init__(self, source: str):
        self.source = source

    def fail(self, node_or_line, message: str):
        line = node_or_line if isinstance(node_or_line, int) else node_or_line.start_mark.line + 1
        raise InputError(f"{self.source}:{line}: {message}")


_SCALAR_LOADER = yaml.SafeLoader("")


def _scalar(node):
    """The Python value of a scalar node under the safe loader's rules (int, float, str, ...)."""
    return _SCALAR_LOADER.construct_object(node, deep=True)


def _typename(node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    v = _scalar(node)
    if v is None:
        return "nothing (null)"
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 80 else text[:80] + f'... ({len(text)} characters)'}"


def _check_tree(ctx, root) -> None:
    """Refuse custom tags, merge keys and oversized trees (aliases are walked once)."""
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > MAX_YAML_NODES:
            ctx.fail(node, f"the spec has more than {MAX_YAML_NODES} YAML nodes (limit)")
        if node.tag == "tag:yaml.org,2002:merge":
            ctx.fail(node, "YAML merge keys (<<) are not supported; write the keys out")
        if node.tag not in _STANDARD_TAGS:
            ctx.fail(node, f"YAML tag {node.tag[:60]!r} is not supported (plain strings, numbers, lists and mappings only)")
        if node.tag == "tag:yaml.org,2002:int" and isinstance(node.value, str) and len(node.value) > MAX_INT_CHARS:
            ctx.fail(node, f"an integer of {len(node.value)} characters; integers in a spec have at most "
                           f"{MAX_INT_CHARS} (MAX_INT_CHARS)")
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack += [k, v]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def _mapping(ctx: _Ctx, node, what: str, allowed) -> dict:
    """{key: (key_node, value_node)}; errors for non-mappings, duplicate and unknown keys."""
    if not isinstance(node, yaml.MappingNode):
        ctx.fail(node, f"{what} must be a mapping, got {_typename(node)}")
    out = {}
    for knode, vnode in node.value:
        if not isinstance(knode, yaml.ScalarNode) or not isinstance(_scalar(knode), str):
            ctx.fail(knode, f"{what}: keys must be strings, got {_typename(knode)}")
        key = _scalar(knode)
        if key in out:
            ctx.fail(knode, f"{what}: duplicate key {key[:60]!r} (first at line {out[key][0].start_mark.line + 1})")
        if key not in allowed:
            hint = [a for a in allowed if a.lower() == key.lower()] or difflib.get_close_matches(key, allowed, n=1)
            ctx.fail(knode, f"{what}: unknown key {key[:60]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                     + f"; allowed keys: {', '.join(allowed)}")
        out[key] = (knode, vnode)
    return out


def _string(ctx, node, what) -> str:
    if not isinstance(node, yaml.ScalarNode) or not isinstance(_scalar(node), str):
        ctx.fail(node, f"{what} must be a string, got {_typename(node)}"
                 + ("; quote it (YAML reads yes/no/on/off as booleans)" if isinstance(node, yaml.ScalarNode)
                    and isinstance(_scalar(node), bool) else ""))
    value = _scalar(node).strip()
    if not value:
        ctx.fail(node, f"{what} must not be empty")
    return value


def _strings(ctx, node, what) -> list:
    """A string or a non-empty list of strings, with the node of each."""
    if isinstance(node, yaml.SequenceNode):
        if not node.value:
            ctx.fail(node, f"{what} must not be an empty list")
        return [(_string(ctx, n, what), n) for n in node.value]
    return [(_string(ctx, node, what), node)]


def _choices(ctx, node, what, noun, allowed) -> list:
    """A string or list of distinct strings, each one of ``allowed``: [(value, node), ...]."""
    out = _strings(ctx, node, what)
    seen = set()
    for v, n in out:
        if v not in allowed:
            ctx.fail(n, f"{what}: unknown {noun} {v[:40]!r}; choose from {', '.join(allowed)}")
        if v in seen:
            ctx.fail(n, f"{what}: {v!r} is listed twice")
        seen.add(v)
    return out


def _int(ctx, node, what) -> int:
    v = _scalar(node) if isinstance(node, yaml.ScalarNode) else None
    if isinstance(v, bool) or not isinstance(v, int):
        ctx.fail(node, f"{what} must be an integer, got {_typename(node)}")
    return v


def _k_values(ctx, node) -> list:
    """[(K, node)] from an integer, a range 'a..b' (inclusive), or a list of both."""
    from .compiler import check_K

    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if isinstance(node, yaml.SequenceNode) and not items:
        ctx.fail(node, "K must not be an empty list")
    out = []
    for item in items:
        if isinstance(item, yaml.ScalarNode) and isinstance(_scalar(item), str):
            text = _scalar(item).strip()
            m = _RANGE.fullmatch(text)
            if m is None:
                ctx.fail(item, f"K: {text[:60]!r} is neither an integer nor a range like 2..64")
            a, b = int(m.group(1)), int(m.group(2))
            if a > b:
                ctx.fail(item, f"K: empty range {text!r} (the start exceeds the end)")
            for k in (a, b):
                try:
                    check_K(k)
                except InputError as e:
                    ctx.fail(item, f"K: range {text!r}: {e}")
            out += [(k, item) for k in range(a, b + 1)]
        elif isinstance(item, yaml.SequenceNode) and item is not node:
            ctx.fail(item, "K: a list of lists is not allowed; use a flat list like [2..64, 128]")
        else:
            out.append((_int(ctx, item, "K"), item))
    return out


_RANGE = re.compile(r"([0-9]{1,9})\s*\.\.\s*([0-9]{1,9})", re.ASCII)


def _k_ranges_valid(ctx, node) -> None:
    """Range endpoints in 2..MAX_K (before a range is counted or expanded)."""
    from .compiler import check_K

    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for item in items:
        v = _scalar(item) if isinstance(item, yaml.ScalarNode) else None
        m = _RANGE.fullmatch(v.strip()) if isinstance(v, str) else None
        if m:
            for k in (int(m.group(1)), int(m.group(2))):
                try:
                    check_K(k)
                except InputError as e:
                    ctx.fail(item, f"K: range {v.strip()!r}: {e}")


def _k_count(node) -> int:
    """How many K values the K field names (without expanding ranges; bad items count 1)."""
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    n = 0
    for item in items:
        v = _scalar(item) if isinstance(item, yaml.ScalarNode) else None
        m = _RANGE.fullmatch(v.strip()) if isinstance(v, str) else None
        n += max(1, int(m.group(2)) - int(m.group(1)) + 1) if m else 1
    return n


def _k_text(node) -> str:
    """The K field as written (for the manifest's entry record)."""
    if isinstance(node, yaml.SequenceNode):
        return "[" + ", ".join(str(_scalar(n)) for n in node.value) + "]"
    return str(_scalar(node))


def _param(ctx, key, node):
    v = _scalar(node) if isinstance(node, yaml.ScalarNode) else None
    if key == "tau":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            ctx.fail(node, f"tau must be a number >= 1, got {_typename(node)}")
        return v
    if key == "objective":
        if v not in ("worst", "mean"):
            ctx.fail(node, f"objective must be 'worst' or 'mean', got {_typename(node)}")
        return v
    if key == "max_mse":
        if (isinstance(v, str) and v.strip().lower().endswith("plugin")) or (
                not isinstance(v, bool) and isinstance(v, (int, float))):
            return v
        ctx.fail(node, f"max_mse must be a positive number, 'plugin' or '<k>plugin', got {_typename(node)}")
    if key == "gamma":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            ctx.fail(node, f"gamma must be a number in (0, 1], got {_typename(node)}")
        return v
    if key == "monotone":
        if not isinstance(v, bool):
            ctx.fail(node, f"monotone must be true or false, got {_typename(node)}")
        return v
    raise AssertionError(key)  # pragma: no cover


def parse_spec(text: str, source: str, base_dir: str | None) -> Spec:
    """Validate spec text; ``base_dir`` resolves a relative ``output`` (None: keep it relative)."""
    from . import compiler
    from .rewards import parse_reward
    from .writers import MAX_NAME_BYTES, table_id

    ctx = _Ctx(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise InputError(f"{source}:1: the YAML is nested too deeply") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise InputError(f"{source}:{line}: not valid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{source}:1: not valid YAML: {e}") from None
    if root is None:
        raise InputError(f"{source}:1: the spec is empty; it needs at least a 'tables' list")
    _check_tree(ctx, root)
    try:
        top = _mapping(ctx, root, "spec", TOP_KEYS)
    except yaml.constructor.ConstructorError as e:  # pragma: no cover - unusual tags
        raise InputError(f"{source}:{e.problem_mark.line + 1}: {e.problem}") from None

    output = "tables"
    if "output" in top:
        output = _string(ctx, top["output"][1], "output")
    if base_dir is not None and not os.path.isabs(output):
        output = os.path.normpath(os.path.join(base_dir, output))

    formats = ("json",)
    if "formats" in top:
        seen = [f for f, _ in _choices(ctx, top["formats"][1], "formats", "format", FORMATS)]
        formats = tuple(f for f in FORMATS if f in seen)  # canonical order

    if "tables" not in top:
        ctx.fail(root, "the spec has no 'tables' list")
    tnode = top["tables"][1]
    if not isinstance(tnode, yaml.SequenceNode) or not tnode.value:
        ctx.fail(tnode, f"tables must be a non-empty list of entries, got {_typename(tnode)}")

    requests: list[TableRequest] = []
    by_id: dict[str, TableRequest] = {}
    n_tables, work = 0, 0.0
    for index, enode in enumerate(tnode.value):
        what = f"tables[{index}]"
        entry = _mapping(ctx, enode, what, ENTRY_KEYS)
        for required in ("divergence", "estimator", "K"):
            if required not in entry:
                ctx.fail(enode, f"{what}: missing key {required!r}")
        divs = _strings(ctx, entry["divergence"][1], f"{what}: divergence")
        est_node = entry["estimator"][1]
        estimator = _string(ctx, est_node, f"{what}: estimator")
        if estimator not in compiler.ESTIMATORS:
            hint = difflib.get_close_matches(estimator, compiler.ESTIMATORS, n=1)
            ctx.fail(est_node, f"{what}: unknown estimator {estimator[:60]!r}"
                     + (f" (did you mean {hint[0]!r}?)" if hint else "")
                     + f"; choose one of {', '.join(compiler.ESTIMATORS)}")
        params = {}
        for key in PARAM_KEYS:
            if key in entry:
                knode, vnode = entry[key]
                if key not in compiler.ESTIMATOR_DEFAULTS[estimator]:
                    ctx.fail(knode, f"{what}: parameter {key!r} does not apply to estimator {estimator!r} "
                                    "(only aqp takes tau, objective, max_mse, gamma, monotone)")
                params[key] = _param(ctx, key, vnode)
        try:
            full = compiler.normalize_params(estimator, params)
        except InputError as e:
            bad = next((entry[k][1] for k in PARAM_KEYS if k in entry), est_node)
            ctx.fail(bad, f"{what}: {e}")
        # resource caps before anything is expanded: tables and work (cost model of TableRequest.cost)
        n_div = len(entry["divergence"][1].value) if isinstance(entry["divergence"][1], yaml.SequenceNode) else 1
        _k_ranges_valid(ctx, entry["K"][1])
        n_base = (len(entry["baseline"][1].value) if "baseline" in entry
                  and isinstance(entry["baseline"][1], yaml.SequenceNode) else 1)
        n_tables += n_div * n_base * _k_count(entry["K"][1])
        if n_tables > MAX_TABLES:
            ctx.fail(entry["K"][1], f"{what}: the spec asks for more than {MAX_TABLES} tables (limit)")
        ks = _k_values(ctx, entry["K"][1])
        for k, knode in ks:
            try:
                compiler.check_K(k)
            except InputError as e:
                ctx.fail(knode, f"{what}: {e}")
        work += n_div * sum(_cost(estimator, k) for k, _ in ks)
        if work > MAX_WORK:
            ctx.fail(entry["K"][1], f"{what}: the spec asks for more solver work than the limit "
                                    f"({MAX_WORK:.3g} units of (1+K)^2; e.g. ~300 aqp tables at K = 2048)")
        rewards = []
        for name, dnode in divs:
            try:
                rewards.append((parse_reward(name), dnode))
            except InputError as e:
                ctx.fail(dnode, f"{what}: {e}")
        baselines = [("none", None)]
        if "baseline" in entry:
            baselines = _choices(ctx, entry["baseline"][1], f"{what}: baseline", "baseline", BASELINES)
        record = {"index": index, "divergence": [r.name for r, _ in rewards], "estimator": estimator,
                  "K": _k_text(entry["K"][1])}
        record.update({k: v for k, v in params.items()})
        if "baseline" in entry:
            record["baseline"] = [b for b, _ in baselines]
        kmax = max(k for k, _ in ks)
        for reward, dnode in rewards:
            # the combination itself (checked at the largest K): error on the estimator line
            for k, knode in ks:
                try:
                    compiler.check_K(k)
                except InputError as e:
                    ctx.fail(knode, f"{what}: {e}")
            try:
                compiler.precheck(reward.name, kmax, estimator, params)
            except InputError as e:
                ctx.fail(est_node, f"{what}: {reward.name} with estimator {estimator}: {e}")
            for (k, knode), (baseline, bnode) in ((kk, bb) for bb in baselines for kk in ks):
                try:
                    compiler.precheck(reward.name, k, estimator, params, baseline)
                except InputError as e:
                    ctx.fail(knode, f"{what}: {reward.name} {estimator} K={k}" + (f" baseline {baseline}" if bnode else "")
                             + f": {e}")
                tid = table_id(reward.name, estimator, compiler.key_params(estimator, full), k, baseline)
                longest = max(len((tid + s).encode("utf-8")) for s in (".json", ".npz", ".h"))
                if longest > MAX_NAME_BYTES:
                    ctx.fail(dnode, f"{what}: the file name of table {tid[:60]}... would be {longest} bytes, "
                                    f"over the {MAX_NAME_BYTES}-byte limit of file systems")
                req = TableRequest(table_id=tid, divergence=reward.name, estimator=estimator,
                                   params=full, K=k, entry=record, line=knode.start_mark.line + 1, baseline=baseline)
                if tid in by_id:
                    first = by_id[tid]
                    ctx.fail(knode, f"{what}: table {tid} is already produced by tables[{first.entry['index']}] "
                                    f"(line {first.line}); each table must come from one entry")
                by_id[tid] = req
                requests.append(req)
    return Spec(source=source, output=output, formats=formats, tables=requests)


def load_spec(path: str | None = None) -> Spec:
    """The spec at ``path`` (output relative to its directory), or the embedded default
    (output relative to the current directory)."""
    if path is None:
        text = resources.files("coefgen").joinpath(DEFAULT_SPEC_NAME).read_text(encoding="utf-8")
        return parse_spec(text, DEFAULT_SPEC_SOURCE, None)
    try:
        size = os.stat(path).st_size
        if size > MAX_SPEC_BYTES:
            raise InputError(f"{path}: the spec is {size} bytes, over the {MAX_SPEC_BYTES >> 10} KiB limit")
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise InputError(f"{path}: cannot read the spec ({e.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: the spec is not UTF-8 text") from None
    return parse_spec(text, path, os.path.dirname(os.path.abspath(path)))
