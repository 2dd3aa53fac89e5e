"""``coefgen build`` and ``coefgen check``: a table set (spec.py) on disk, with a manifest.

build: every table of the spec into the output directory, one file per format, plus
``manifest.json`` (canonical JSON; per file: path, sha256 of the bytes, table_id, inputs key,
the spec entry) and, with format ``c``, the aggregate header ``coefgen_tables.h``.

* Incremental: a table whose inputs key and coefgen version match the manifest and whose
  files hash-match it (JSON also re-validated) is not re-solved.
* Parallel: tables are solved in worker processes, biggest first; each worker also renders
  the files and re-verifies (coefgen.verify) the JSON it rendered, so the main process only
  writes.
* Crash-safe: files are written atomically (temp file + rename), a table's files before its
  manifest entry, and the manifest (atomically) after every finished table. Killing a build
  at any point leaves every earlier table and the manifest intact; a half-built table is
  simply re-solved next time.

* Locked: a build holds an exclusive ``fcntl.flock`` on the output directory itself; a second
  build on the same directory waits up to LOCK_WAIT_SECONDS, then exits 2 naming the holder.
  Temporary files carry their writer's pid; only those of dead processes are removed at
  start-up.
* Safe output directory: refused (exit 2) when it holds the spec file (at any depth) or a
  ``.git``: tables go to a dedicated subdirectory. ``--prune`` deletes only regular,
  non-hidden files at the top of the directory that coefgen provably wrote: listed in the
  manifest with a matching sha256, or named by the spec's naming scheme (``<table_id>.json``,
  ``.npz``, ``.h``, ``coefgen_tables.h``) and verifying as a coefgen table/header. Never a
  directory, a symlink, a dot-entry, or anything outside the directory.

check: rebuilds the whole set in a temporary directory (re-solving everything: a hand-edited
value whose editor also fixed sha256 and the manifest must still be caught) and compares
byte for byte with the output directory. The temporary directory is named
``coefgen-check-<pid>-*``; those of dead processes (a ``kill -9``) are removed by the next check.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field

from . import __version__
from .errors import CheckError, InputError
from .payload import MANIFEST_SCHEMA, canonical_json
from .spec import Spec, TableRequest
from .aggregate import AGGREGATE_HEADER, aggregate_header
from .writers import SUFFIX, TMP_PREFIX, TMP_SUFFIX, pid_alive, short, tmp_owner_pid, write_atomic

MANIFEST = "manifest.json"
LOCK_WAIT_SECONDS = 10.0  # a second build on the same directory waits this long, then exits 2
CHECK_TMP_PREFIX = "coefgen-check-"
STALE_LEGACY_TMP_SECONDS = 600  # temp files without a pid (older coefgen) older than this are stale


class Interrupted(Exception):
    """The build was interrupted (Ctrl-C / SIGTERM); what was finished is kept."""


class WriteFailed(InputError):
    """A finished table could not be written (full disk, read-only directory): the build stops."""


@dataclass
class TableResult:
    request: TableRequest
    status: str  # "solved", "cached", "failed"
    seconds: float = 0.0
    summary: dict | None = None  # K, estimator, bias_bound, minimax_level, mse_bound
    error: str | None = None


@dataclass
class BuildResult:
    out_dir: str
    results: list = field(default_factory=list)  # TableResult, spec order
    failures: list = field(default_factory=list)  # one line each
    extras: list = field(default_factory=list)  # relative paths not in the spec
    pruned: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def solved(self):
        return [r for r in self.results if r.status == "solved"]

    @property
    def cached(self):
        return [r for r in self.results if r.status == "cached"]


# --------------------------------------------------------------------------- helpers

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_names(req: TableRequest, formats) -> dict:
    return {fmt: req.table_id + SUFFIX[fmt] for fmt in formats}


def read_manifest(out_dir: str) -> dict:
    """{path: record} of the manifest in ``out_dir`` ({} if missing or unreadable)."""
    from .payload import MAX_MANIFEST_JSON_VALUES, parse_json

    data = _read_capped(os.path.join(out_dir, MANIFEST))  # a regular file within the size cap
    if data is None:
        return {}
    try:
        doc = parse_json(data, MANIFEST, max_values=MAX_MANIFEST_JSON_VALUES)  # memory bounded
        if doc.get("schema") != MANIFEST_SCHEMA:
            return {}
        return {rec["path"]: rec for rec in doc["files"] if isinstance(rec, dict) and "path" in rec}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def manifest_bytes(records: dict) -> bytes:
    """canonical_json of the manifest document {schema, generator_version, files (sorted by path)}.

    The same bytes as encoding the whole document (tests/test_build.py checks it), assembled from
    each record's canonical text, cached: a build rewrites the manifest after every table, and
    json's indenting encoder is pure Python (re-encoding every record each time was quadratic)."""
    head = {"schema": MANIFEST_SCHEMA, "generator_version": __version__}
    if not records:
        return canonical_json({**head, "files": []}).encode("utf-8")
    marker = "\u0001records\u0001"
    text = canonical_json({**head, "files": [marker]})
    body = ",\n    ".join(_record_text(records[p]) for p in sorted(records))
    return text.replace(json.dumps(marker, ensure_ascii=False), body, 1).encode("utf-8")


_RECORD_TEXT: dict = {}  # id(record) -> (record, text); records are replaced, never mutated


def _record_text(rec: dict) -> str:
    """canonical_json(rec) as it appears nested at depth 2 (every inner line indented 4 more)."""
    hit = _RECORD_TEXT.get(id(rec))
    if hit is not None and hit[0] is rec:  # the cache holds rec, so its id is not reused meanwhile
        return hit[1]
    if len(_RECORD_TEXT) > 100_000:
        _RECORD_TEXT.clear()
    text = canonical_json(rec)[:-1].replace("\n", "\n    ")
    _RECORD_TEXT[id(rec)] = (rec, text)
    return text


def _summary_of(payload: dict) -> dict:
    return {k: payload.get(k) for k in ("K", "estimator", "bias_bound", "minimax_level", "mse_bound", "sha256")}


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _fresh_summary(req: TableRequest, out_dir: str, formats, manifest: dict):
    """The table's summary if its files are intact and up to date, else None."""
    from .payload import parse_json, validate
    from .runtime import TableError, load

    summary = {"K": req.K, "estimator": req.estimator}
    datas, primary = {}, None
    for fmt, name in file_names(req, formats).items():
        rec = manifest.get(name)
        if not rec or rec.get("inputs_key") != req.inputs_key or rec.get("generator_version") != __version__:
            return None
        data = _read_capped(os.path.join(out_dir, name))
        if data is None or sha256_bytes(data) != rec.get("sha256"):
            return None
        datas[fmt] = data
        if fmt == "json" or (fmt == "npz" and "json" not in formats):
            try:
                if fmt == "json":
                    payload = parse_json(data, name)  # strict: duplicate keys, huge ints, nesting
                    validate(payload, name)
                else:
                    payload = load(os.path.join(out_dir, name)).payload
            except (ValueError, TableError, UnicodeDecodeError):
                return None
            if (payload.get("generator_version") != __version__ or payload.get("K") != req.K
                    or payload.get("divergence") != req.divergence or payload.get("estimator") != req.estimator):
                return None
            # a hand edit re-sealed (sha256 and manifest fixed): values must still round from
            # values_exact, and closed-form tables (exact, plugin, digamma) must recompute equal
            from .consistency import values_failures
            from .rewards import parse_reward

            from .baseline import baseline_failures, effective_payload

            if payload.get("baseline", "none") != req.baseline or baseline_failures(payload):
                return None
            if values_failures(effective_payload(payload), parse_reward(req.divergence)):
                return None
            summary = _summary_of(payload)
            primary = payload
    if primary is None:  # C headers only: no payload to re-derive them from; the header must name the table
        from .writers import c_identifier

        macro = ("COEFGEN_" + c_identifier(req.table_id).upper()).encode()
        return summary if b"\n#define " + macro + b"_K " + str(req.K).encode() + b"\n" in datas.get("c", b"") else None
    if not _formats_agree(req, primary, datas):
        return None
    return summary


def _read_capped(path: str) -> bytes | None:
    """A regular file's bytes, at most MAX_FILE_BYTES (None otherwise: the table is re-solved)."""
    from .runtime import TableError, read_regular

    try:
        return read_regular(path)
    except TableError:
        return None


def _formats_agree(req: TableRequest, payload: dict, datas: dict) -> bool:
    """Every format of a cached table is its table (issue 20.10): the payload names this table,
    and the other formats are byte for byte what the writers render from it (the build wrote
    exactly those bytes), so an NPZ or C header edited (manifest re-sealed), or a genuine table
    of another name renamed, is re-solved rather than kept and copied into coefgen_tables.h."""
    from .writers import render

    if payload.get("table_id") != req.table_id:
        return False
    for fmt, data in datas.items():
        if fmt == "json" or (fmt == "npz" and "json" not in datas):
            continue  # the primary: validated above
        try:
            if render(payload, fmt, __version__) != data:
                return False
        except (KeyError, TypeError, ValueError):
            return False
    return True


def _record(req: TableRequest, fmt: str, name: str, data: bytes) -> dict:
    return {
        "path": name,
        "format": fmt,
        "sha256": sha256_bytes(data),
        "table_id": req.table_id,
        "inputs_key": req.inputs_key,
        "inputs": req.inputs,
        "entry": req.entry,
        "generator_version": __version__,
    }


# --------------------------------------------------------------------------- worker

def _worker_init():  # pragma: no cover - runs in worker processes
    # Ctrl-C reaches the whole process group: the parent decides, workers just get terminated.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # if the build is killed (kill -9), do not keep solving for nobody
    import threading

    parent = os.getppid()

    def watchdog():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()


def solve_request(req: TableRequest, formats, do_verify: bool) -> dict:
    """Solve, certify, render every format and (optionally) verify the rendered JSON.

    Runs in a worker process; returns plain data (bytes per format, summary, failures)."""
    from . import compiler, verify

    t0 = time.perf_counter()
    payload = compiler.compile_table(req.divergence, req.K, req.estimator, req.params)
    return _rendered(req, payload, formats, do_verify, verify.verify_payload, t0)


def derive_request(req: TableRequest, inner: dict, formats, do_verify: bool) -> dict:
    """A loo/mean table from the no-baseline payload at K − 1 (already solved and verified):
    pad, seal, render; verification checks that the rendered file is exactly that padding."""
    from . import compiler
    from .baseline import baseline_failures

    def padding_failures(written, source):
        return [f"{source}: {x}" for x in baseline_failures(written)]

    t0 = time.perf_counter()
    payload = compiler.compile_table(req.divergence, req.K, req.estimator, req.params, req.baseline, inner=inner)
    return _rendered(req, payload, formats, do_verify, padding_failures, t0)


def _rendered(req: TableRequest, payload: dict, formats, do_verify: bool, check, t0: float) -> dict:
    """Every format's bytes and, with ``do_verify``, ``check(written, source)`` on the JSON as
    written (what is on disk, not the dict)."""
    from .payload import validate
    from .writers import render

    if payload.get("table_id") != req.table_id:
        raise CheckError(f"{req.table_id}: the compiler named the table {payload.get('table_id')!r}")
    files = {fmt: render(payload, fmt, __version__) for fmt in formats}
    failures = []
    if do_verify:
        json_data = files["json"] if "json" in files else render(payload, "json", __version__)
        written = json.loads(json_data.decode("utf-8"))
        try:
            validate(written, req.table_id + SUFFIX["json"])
        except ValueError as e:
            failures.append(str(e))
        else:
            failures += check(written, req.table_id + SUFFIX["json"])
    return {"files": files, "summary": _summary_of(payload), "failures": failures,
            "seconds": time.perf_counter() - t0, "payload": payload}


def _disk_payload(req: TableRequest, out_dir: str, formats) -> dict | None:
    """The payload of an up-to-date table of the set, read back from its JSON (or NPZ) file."""
    from .runtime import TableError, load

    fmt = "json" if "json" in formats else "npz" if "npz" in formats else None
    if fmt is None:
        return None
    try:
        return load(os.path.join(out_dir, req.table_id + SUFFIX[fmt])).payload
    except (TableError, OSError):
        return None


# --------------------------------------------------------------------------- progress

def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """A bar with ETA on a terminal, plain log lines otherwise, nothing when quiet.

    Off a terminal: a line per finished table, and while nothing finishes a line every
    HEARTBEAT_SECONDS saying how far the run is (big tables go first and can take a minute).
    A daemon thread keeps the bar's clock (and the heartbeat) moving while a table solves."""

    HEARTBEAT_SECONDS = 15.0

    def __init__(self, todo: list, label: str, quiet: bool, stream=None):
        import threading

        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = (not quiet) and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.label = label
        self.n = len(todo)
        self.total_cost = sum(r.cost() for r in todo) or 1.0
        self.done = 0
        self.done_cost = 0.0
        self.t0 = time.monotonic()
        self.last_line = self.t0
        self.current = ""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker = None

    def _eta(self) -> str:
        elapsed = time.monotonic() - self.t0
        return "?" if self.done_cost == 0 else _fmt_seconds(elapsed * (self.total_cost - self.done_cost) / self.done_cost)

    def log(self, text: str):
        if self.quiet:
            return
        with self._lock:
            if self.tty:
                self.stream.write("\r\033[K")
            self.stream.write(text + "\n")
            self.last_line = time.monotonic()
            self.redraw()

    def _tick(self):
        while not self._stop.wait(1.0):
            self.redraw()

    def redraw(self):
        if self.quiet or self.n == 0:
            return
        with self._lock:
            if self._ticker is None and not self._stop.is_set():
                import threading

                self._ticker = threading.Thread(target=self._tick, name="coefgen-progress", daemon=True)
                self._ticker.start()
            elapsed = time.monotonic() - self.t0
            if not self.tty:
                if self.done < self.n and time.monotonic() - self.last_line >= self.HEARTBEAT_SECONDS:
                    self.stream.write(f"{self.label}: {self.done}/{self.n} table(s) done, {_fmt_seconds(elapsed)} "
                                      f"elapsed, ETA {self._eta()}\n")
                    self.stream.flush()
                    self.last_line = time.monotonic()
                return
            width = 30
            frac = self.done_cost / self.total_cost
            filled = int(width * frac)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r\033[K{self.label} [{bar}] {self.done}/{self.n}  {_fmt_seconds(elapsed)} elapsed, "
                              f"ETA {self._eta()}")
            self.stream.flush()

    def finished(self, req, seconds: float, ok: bool):
        with self._lock:
            self.done += 1
            self.done_cost += req.cost()
            if self.tty:
                if not ok:
                    self.log(f"FAILED {req.table_id}")
                self.redraw()
            elif not self.quiet:
                self.stream.write(f"[{self.done:>{len(str(self.n))}}/{self.n}] {req.table_id}: "
                                  f"{'solved' if ok else 'FAILED'} in {seconds:.2f}s\n")
                self.stream.flush()
                self.last_line = time.monotonic()

    def close(self):
        self._stop.set()
        with self._lock:
            if self.tty:
                self.stream.write("\r\033[K")
                self.stream.flush()


# --------------------------------------------------------------------------- build

def _list_files(out_dir: str) -> list:
    out = []
    for root, dirs, files in os.walk(out_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(TMP_PREFIX))
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), out_dir)
            out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def _is_tmp(rel: str) -> bool:
    return os.path.basename(rel).startswith(TMP_PREFIX) and rel.endswith(TMP_SUFFIX)


def _stale_tmp(out_dir: str, rel: str) -> bool:
    """A temporary file whose writer is gone (pid dead; legacy names: old enough)."""
    path = os.path.join(out_dir, rel)
    pid = tmp_owner_pid(os.path.basename(rel))
    if pid is not None:
        return pid != os.getpid() and not pid_alive(pid)
    try:
        return time.time() - os.lstat(path).st_mtime > STALE_LEGACY_TMP_SECONDS
    except OSError:
        return False


class OutputLock:
    """Exclusive ``fcntl.flock`` on the output directory itself (no lock file is left behind);
    InputError (exit 2) naming the holder's pid (from /proc/locks, Linux) if it is still held
    after ``wait`` seconds. The kernel drops the lock when the holder dies, even by kill -9."""

    def __init__(self, out_dir: str, wait: float = LOCK_WAIT_SECONDS):
        self.dir = out_dir
        self.wait = wait
        self.fd = None

    def __enter__(self):
        import fcntl

        try:
            fd = os.open(self.dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as e:
            raise InputError(f"cannot lock the output directory {short(self.dir)}: {e.strerror}") from None
        deadline = time.monotonic() + max(0.0, self.wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise InputError(f"cannot lock the output directory {short(self.dir)}: {e.strerror}") from None
                if time.monotonic() >= deadline:
                    holder = lock_holder(fd)
                    os.close(fd)
                    raise InputError(
                        f"{short(display_path(self.dir))} is locked by another coefgen build"
                        f"{f' (pid {holder})' if holder else ''}; waited {self.wait:g}s. "
                        "Wait for it to finish (two builds must not share an output directory)") from None
                time.sleep(0.1)
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None
        return False


def lock_holder(fd: int) -> int | None:
    """pid holding a flock on the file of ``fd``, from /proc/locks (None if unknown)."""
    try:
        st = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read(1 << 20).splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 08:01:123456 0 EOF" ("-> " marks waiters)
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[0] != "->":
            try:
                pid = int(parts[4])
                inode = int(parts[5].rsplit(":", 1)[1])
            except (ValueError, IndexError):
                continue
            if inode == st.st_ino and pid != os.getpid():
                return pid
    return None


def _inside(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or lies below it (both resolved)."""
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def check_output_dir(spec: Spec, out_dir: str) -> None:
    """InputError (exit 2) if ``out_dir`` cannot be a table directory: an existing non-directory,
    a directory holding the spec file (at any depth) or a ``.git`` (use a dedicated subdirectory)."""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f"output {short(out_dir)} exists and is not a directory")
    if spec.source and os.path.isfile(spec.source) and _inside(spec.source, out_dir):
        raise InputError(f"output directory {short(display_path(out_dir))} holds the spec {short(spec.source)}: "
                         "tables need a dedicated subdirectory (e.g. output: tables)")
    if os.path.lexists(os.path.join(out_dir, ".git")):
        raise InputError(f"output directory {short(display_path(out_dir))} holds a .git (a repository root): "
                         "tables need a dedicated subdirectory (e.g. --out tables)")


_HEADER_RE = re.compile(rb"/\* generated by coefgen [^\s;]+; do not edit \*/\n")


def _written_by_coefgen(out_dir: str, rel: str, old_manifest: dict, formats) -> bool:
    """Whether the file ``rel`` is provably a coefgen output that --prune may delete.

    Only regular non-hidden files at the top of ``out_dir``; then either listed in the
    manifest with matching sha256, or named ``<table_id><suffix>`` / the aggregate header and
    verifying as such (JSON/NPZ: an intact table whose table_id is the name; .h: a coefgen
    header)."""
    from .runtime import TableError, load

    if "/" in rel or os.sep in rel or rel.startswith(".") or rel == MANIFEST:
        return False
    path = os.path.join(out_dir, rel)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size > (64 << 20):
        return False
    data = _read(path)
    if data is None:
        return False
    rec = old_manifest.get(rel)
    if rec is not None and rec.get("sha256") == sha256_bytes(data):
        return True
    stem, ext = os.path.splitext(rel)
    if ext in (".json", ".npz"):
        try:
            table = load(path)
        except TableError:
            return False
        return table.payload.get("table_id") == stem
    if ext == ".h":
        if not _HEADER_RE.match(data):
            return False
        if rel == AGGREGATE_HEADER:
            return b"\n#ifndef COEFGEN_TABLES_H\n" in data
        from .writers import c_identifier

        guard = ("COEFGEN_" + c_identifier(stem).upper() + "_H").encode()
        return b"#ifndef " + guard + b"\n" in data
    return False


def _is_coefgen_manifest(out_dir: str) -> bool:
    """manifest.json carries coefgen's seal: a regular file, a coefgen manifest (schema, version, files)."""
    from .payload import MAX_FILE_BYTES, MAX_MANIFEST_JSON_VALUES, parse_json

    path = os.path.join(out_dir, MANIFEST)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
        return False
    data = _read_capped(path)
    try:
        doc = parse_json(data, MANIFEST, max_values=MAX_MANIFEST_JSON_VALUES) if data is not None else None
    except ValueError:
        return False
    return (isinstance(doc, dict) and doc.get("schema") == MANIFEST_SCHEMA and isinstance(doc.get("files"), list)
            and isinstance(doc.get("generator_version"), str))


def _probe_writable(out_dir: str) -> None:
    """InputError (exit 2) before any solving if no file can be created in ``out_dir``
    (read-only directory or file system, permissions; issue 20.13)."""
    from .writers import TMP_PREFIX, TMP_SUFFIX, _os_error

    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=TMP_SUFFIX, dir=out_dir)
    except OSError as e:
        err = _os_error(out_dir, e)
        raise InputError(f"{err} (the output directory; nothing was solved)") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass


def refuse_foreign_outputs(out_dir: str, names, old_manifest: dict, formats) -> None:
    """InputError (exit 2) naming the first destination of the build that exists but was not
    provably written by coefgen (issue 20.8: the rule of --prune): a user file named like a
    table, a foreign manifest.json or coefgen_tables.h, a symlink, a directory. Checked before
    any solving, so nothing is lost and nothing is overwritten."""
    foreign = []
    for name in names:
        path = os.path.join(out_dir, name)
        if not os.path.lexists(path):
            continue
        ok = _is_coefgen_manifest(out_dir) if name == MANIFEST else _written_by_coefgen(
            out_dir, name, old_manifest, formats)
        if not ok:
            foreign.append(name)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise InputError(f"{short(display_path(os.path.join(out_dir, foreign[0])))} exists and was not written by "
                         f"coefgen{more} (or is damaged beyond recognition): build replaces only files it provably wrote; "
                         "move it away (or delete it) or choose another --out")


def build(spec: Spec, out_dir: str | None = None, jobs: int | None = None, quiet: bool = False,
          force: bool = False, prune: bool = False, verify: bool = True, label: str = "build",
          stream=None, lock_wait: float | None = None) -> BuildResult:
    """Build ``spec`` into ``out_dir`` (default: the spec's output). Raises Interrupted."""
    t_start = time.perf_counter()
    out_dir = out_dir or spec.output
    check_output_dir(spec, out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the output directory {short(out_dir)}: {e.strerror}") from None
    with OutputLock(out_dir, LOCK_WAIT_SECONDS if lock_wait is None else lock_wait):
        return _build_locked(spec, out_dir, jobs, quiet, force, prune, verify, label, stream, t_start)


def _build_locked(spec, out_dir, jobs, quiet, force, prune, verify, label, stream, t_start) -> BuildResult:
    stop = _Stop()  # from here on a SIGTERM/SIGINT ends the build cleanly, exit 130 (issue 20.11)
    previous = stop.install()
    try:
        return _build_locked_inner(spec, out_dir, jobs, quiet, force, prune, verify, label, stream, t_start, stop)
    except KeyboardInterrupt:  # before or after the solving loop: nothing half-done, say so
        raise Interrupted(f"{label} interrupted before solving: no table was written (run it again)") from None
    finally:
        stop.restore(previous)


def _build_locked_inner(spec, out_dir, jobs, quiet, force, prune, verify, label, stream, t_start, stop) -> BuildResult:
    result = BuildResult(out_dir=out_dir)
    stream = stream or sys.stderr
    formats = spec.formats
    manifest = {} if force else read_manifest(out_dir)
    old_manifest = read_manifest(out_dir)

    def note(text):
        if not quiet:
            stream.write(text + "\n")

    # leftovers of a killed build (temporary files of atomic writes)
    leftovers = [f for f in _list_files(out_dir) if _is_tmp(f) and _stale_tmp(out_dir, f)]
    for f in leftovers:
        try:
            os.unlink(os.path.join(out_dir, f))
        except OSError:
            pass
    if leftovers:
        note(f"removed {len(leftovers)} temporary file(s) left by an interrupted build")

    expected = {}
    for req in spec.tables:
        for name in file_names(req, formats).values():
            expected[name] = req
    refuse_foreign_outputs(out_dir, list(expected) + [MANIFEST] + ([AGGREGATE_HEADER] if "c" in formats else []),
                           old_manifest, formats)
    _probe_writable(out_dir)
    # records that still describe files on disk stay until their table is rewritten
    records = {p: rec for p, rec in old_manifest.items() if p in expected or p == AGGREGATE_HEADER}
    written_manifest = _read(os.path.join(out_dir, MANIFEST))

    def flush_manifest():
        nonlocal written_manifest
        data = manifest_bytes(records)
        if data != written_manifest:
            write_atomic(os.path.join(out_dir, MANIFEST), data)
            written_manifest = data

    by_id: dict[str, TableResult] = {}
    todo = []
    for req in spec.tables:
        summary = None if force else _fresh_summary(req, out_dir, formats, manifest)
        if summary is not None:
            by_id[req.table_id] = TableResult(req, "cached", summary=summary)
        else:
            todo.append(req)
    n_todo = len(todo)
    # tables under a group baseline (loo, mean) are the no-baseline table at K − 1, padded: that
    # table is solved once (or read from the set when it is up to date), never per baseline
    derived = [r for r in todo if r.baseline != "none"]
    todo = [r for r in todo if r.baseline == "none"]
    inner_payloads: dict[str, dict] = {}
    inner_errors: dict[str, str] = {}
    needed = {r.inner.table_id: r.inner for r in derived}
    todo_ids = {r.table_id for r in todo}
    hidden = []  # needed, not written: the set has no up-to-date file of it
    for tid, inner in needed.items():
        if tid in todo_ids:
            continue
        cached = by_id.get(tid)
        payload = _disk_payload(cached.request, out_dir, formats) if cached is not None else None
        if payload is not None:
            inner_payloads[tid] = payload
        else:
            hidden.append(inner)
    hidden_ids = {r.table_id for r in hidden}
    todo = todo + hidden
    todo.sort(key=lambda r: (-r.cost(), r.table_id))  # big tables first
    if n_todo:
        note(f"{label}: {n_todo} table(s) to solve, {len(spec.tables) - n_todo} up to date"
             + (f" ({jobs} jobs)" if jobs and jobs > 1 else "")
             + (f"; {len(derived)} of them for a group baseline, from the K-1 table" if derived else ""))
    progress = Progress(todo + derived, label, quiet, stream)

    def finish(req: TableRequest, out: dict | None, error: str | None, seconds: float):
        if error is None and out["failures"]:
            error = "; ".join(out["failures"])
        if error is not None:
            by_id[req.table_id] = TableResult(req, "failed", seconds, error=error)
            result.failures.append(f"{req.table_id}: {error}")
            progress.finished(req, seconds, False)
            return
        try:
            for fmt, name in file_names(req, formats).items():  # files first ...
                write_atomic(os.path.join(out_dir, name), out["files"][fmt])
            for fmt, name in file_names(req, formats).items():  # ... then their manifest entries
                records[name] = _record(req, fmt, name, out["files"][fmt])
            flush_manifest()
        except InputError as e:  # full disk, directory made read-only: stop, do not solve for nothing
            raise WriteFailed(str(e)) from None
        by_id[req.table_id] = TableResult(req, "solved", out["seconds"], summary=out["summary"])
        progress.finished(req, out["seconds"], True)

    def finish_solved(req: TableRequest, out: dict | None, error: str | None, seconds: float):
        """Keep the payloads the baseline tables need; hidden K − 1 tables are not written."""
        ok = error is None and not out["failures"]
        if req.table_id in needed:
            if ok:
                inner_payloads[req.table_id] = out["payload"]
            else:
                inner_errors[req.table_id] = error if error is not None else "; ".join(out["failures"])
        if req.table_id in hidden_ids:
            progress.finished(req, seconds, ok)
            return
        finish(req, out, error, seconds)

    def finish_derived():
        for req in derived:
            stop.check()  # a signal during the previous table's writes: stop here, cleanly
            t0 = time.perf_counter()
            inner_id = req.inner.table_id
            if inner_id not in inner_payloads:
                why = inner_errors.get(inner_id, "not built")
                finish(req, None, f"its K-1 table {inner_id} failed: {why}", 0.0)
                continue
            try:
                out = derive_request(req, inner_payloads[inner_id], formats, verify)
            except Exception as e:  # noqa: BLE001 - one failed table does not stop the set
                finish(req, None, _describe(e), time.perf_counter() - t0)
                continue
            finish(req, out, None, out["seconds"])

    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    stop.check()
    try:
        progress.redraw()
        if jobs == 1:
            for req in todo:
                stop.check()  # a signal during the previous table's writes: stop here, cleanly
                t0 = time.perf_counter()
                try:
                    stop.in_solve = True  # only a solve is interrupted by raising in the handler
                    try:
                        out = solve_request(req, formats, verify)
                    finally:
                        stop.in_solve = False
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # noqa: BLE001 - one failed table does not stop the set
                    finish_solved(req, None, _describe(e), time.perf_counter() - t0)
                    continue
                finish_solved(req, out, None, out["seconds"])  # a write failure (WriteFailed) stops the build
            stop.check()
        elif todo:
            _run_pool(todo, formats, verify, jobs, finish_solved, progress, stop)
        finish_derived()
        flush_manifest()
    except KeyboardInterrupt:
        progress.close()
        flush_manifest()
        done = sum(1 for r in by_id.values() if r.status == "solved")
        raise Interrupted(f"{label} interrupted: {done} table(s) finished and kept; "
                          f"{n_todo - done} not built (run it again to continue)") from None
    except WriteFailed as e:
        progress.close()
        try:
            flush_manifest()
        except InputError:
            pass
        done = sum(1 for r in by_id.values() if r.status == "solved")
        raise InputError(f"{e}; {label} stopped: {done} table(s) written and kept, "
                         f"{n_todo - done} not written") from None
    finally:
        progress.close()

    result.results = [by_id[r.table_id] for r in spec.tables]
    # aggregate C header (from the per-table headers on disk), only when every table is there
    if "c" in formats and not result.failures:
        data = aggregate_header(spec, out_dir)
        path = os.path.join(out_dir, AGGREGATE_HEADER)
        if _read(path) != data:
            write_atomic(path, data)
        records[AGGREGATE_HEADER] = {"path": AGGREGATE_HEADER, "format": "c", "sha256": sha256_bytes(data),
                                     "table_id": None, "inputs_key": None, "inputs": None, "entry": None,
                                     "generator_version": __version__}
    elif "c" not in formats:
        records.pop(AGGREGATE_HEADER, None)
    flush_manifest()

    known = set(expected) | {MANIFEST} | ({AGGREGATE_HEADER} if "c" in formats else set())
    result.extras = [f for f in _list_files(out_dir) if f not in known and not _is_tmp(f)]
    if prune:
        kept = []
        for f in result.extras:
            if _written_by_coefgen(out_dir, f, old_manifest, formats):
                try:
                    os.unlink(os.path.join(out_dir, f))
                    result.pruned.append(f)
                    continue
                except OSError:
                    pass
            kept.append(f)
        result.extras = kept
    result.seconds = time.perf_counter() - t_start
    return result


def _describe(e: BaseException) -> str:
    from .errors import CoefgenError

    return str(e) if isinstance(e, CoefgenError) else f"{type(e).__name__}: {e}"


class _Stop:
    """SIGTERM and SIGINT during a build (issue 20.11): the handler only records the request,
    and the build stops at a point of its own choosing (between tables, or in the pool's
    polling loop), so no exception is ever raised inside a file write, a lock of the pool, or
    the clean-up itself. The single exception: while a table is being solved in this process
    (--jobs 1), the handler raises KeyboardInterrupt to abandon that solve at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self.in_solve = False

    def handler(self, signum, frame):
        self.requested = True
        if self.in_solve:
            self.in_solve = False
            raise KeyboardInterrupt

    def install(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None
        return {sig: signal.signal(sig, self.handler) for sig in self.SIGNALS}

    def restore(self, previous):
        for sig, old in (previous or {}).items():
            signal.signal(sig, old)

    def check(self):
        if self.requested:
            raise KeyboardInterrupt


POOL_POLL_SECONDS = 0.2    # the pool loop notices a signal within this time
WORKER_STOP_SECONDS = 5.0  # terminated workers get this long to exit before SIGKILL


def _worker_main(conn, formats, do_verify):  # pragma: no cover - runs in worker processes
    """A worker: solve the requests received on ``conn`` until None or EOF; send back
    ("ok", result) or ("error", message)."""
    _worker_init()
    while True:
        try:
            req = conn.recv()
        except (EOFError, OSError):
            return
        if req is None:
            return
        try:
            msg = ("ok", solve_request(req, formats, do_verify))
        except Exception as e:  # noqa: BLE001 - reported by the parent as this table's failure
            msg = ("error", _describe(e))
        try:
            conn.send(msg)
        except (OSError, ValueError):
            return


class _Slot:
    def __init__(self, proc, conn):
        self.proc, self.conn = proc, conn
        self.req, self.t0 = None, 0.0


def _run_pool(todo, formats, verify, jobs, finish, progress, stop=None):
    """Solve ``todo`` in ``jobs`` worker processes (biggest first), calling ``finish`` in this
    process for each result. A plain pool of processes and pipes (no executor threads): on an
    interruption or an error every worker is terminated, joined (SIGKILL after
    WORKER_STOP_SECONDS) and its pipe closed before the exception propagates, so the build
    always exits (issue 20.11)."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    stop = stop or _Stop()
    ctx = mp.get_context()
    queue = list(todo)
    slots = []

    def assign(slot):
        if queue:
            slot.req, slot.t0 = queue.pop(0), time.perf_counter()
            slot.conn.send(slot.req)
        else:
            slot.req = None

    try:
        for _ in range(jobs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, formats, verify), daemon=True)
            proc.start()
            child.close()
            slots.append(_Slot(proc, parent))
        for slot in slots:
            assign(slot)
        while any(slot.req is not None for slot in slots):
            stop.check()
            busy = [slot for slot in slots if slot.req is not None]
            ready = set(wait([s.conn for s in busy] + [s.proc.sentinel for s in busy], timeout=POOL_POLL_SECONDS))
            for slot in sorted(busy, key=lambda s: s.req.table_id):
                if slot.conn not in ready and slot.proc.sentinel not in ready:
                    continue
                req = slot.req
                try:
                    kind, value = slot.conn.recv()
                except (EOFError, OSError):
                    slot.proc.join(1.0)
                    raise CheckError(f"a worker process died while solving {req.table_id} (exit code "
                                     f"{slot.proc.exitcode}); no finished table was lost") from None
                if kind == "ok":
                    finish(req, value, None, value["seconds"])
                else:
                    finish(req, None, value, time.perf_counter() - slot.t0)
                assign(slot)
            progress.redraw()
    except BaseException:
        _stop_workers(slots, terminate=True)
        raise
    _stop_workers(slots, terminate=False)


def _stop_workers(slots, terminate: bool) -> None:
    """Stop every worker and wait for it (terminate, or ask politely; SIGKILL as the last resort)."""
    for slot in slots:
        if terminate:
            if slot.proc.is_alive():
                slot.proc.terminate()
        else:
            try:
                slot.conn.send(None)
            except (OSError, ValueError):
                pass
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    for slot in slots:
        slot.proc.join(max(0.0, deadline - time.monotonic()))
        if slot.proc.is_alive():
            slot.proc.kill()
            slot.proc.join()
        slot.conn.close()


# --------------------------------------------------------------------------- check

def _version_of(rel: str, data: bytes) -> str | None:
    """generator_version stated by a file of the set (None if it cannot be read)."""
    import re

    try:
        if rel.endswith(".json"):
            from .payload import parse_json

            return parse_json(data, rel).get("generator_version")  # memory bounded (issue 20.6)
        if rel.endswith(".npz"):
            from .runtime import _payload_from_npz

            return _payload_from_npz(rel, data).get("generator_version")  # size-capped members, bounded JSON
        if rel.endswith(".h"):
            m = re.match(rb"/\* generated by coefgen (\S+);", data)
            return m.group(1).decode("ascii") if m else None
    except Exception:  # noqa: BLE001 - an unreadable file is simply "changed"
        return None
    return None


def check(spec: Spec, out_dir: str | None = None, jobs: int | None = None, quiet: bool = False,
          stream=None) -> list:
    """Rebuild into a temporary directory; one line per difference with ``out_dir``."""
    out_dir = out_dir or spec.output
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f"{short(out_dir)} exists and is not a directory")
    clean_stale_check_dirs()
    with tempfile.TemporaryDirectory(prefix=f"{CHECK_TMP_PREFIX}{os.getpid()}-") as tmp:
        try:
            res = build(spec, tmp, jobs=jobs, quiet=quiet, force=True, verify=False, label="check", stream=stream)
        except Interrupted:
            raise Interrupted(f"check interrupted: nothing was compared and nothing in {display_path(out_dir)} "
                              "was changed") from None
        if res.failures:
            raise CheckError("check could not rebuild the set: " + "; ".join(res.failures))
        fresh = {rel: _read(os.path.join(tmp, rel)) for rel in _list_files(tmp)}
    actual = [f for f in _list_files(out_dir) if not _is_tmp(f)] if os.path.isdir(out_dir) else []
    lines = []
    for rel in sorted(set(fresh) | set(actual)):
        shown = display_path(os.path.join(out_dir, rel))
        if rel not in actual:
            lines.append(f"missing {shown}")
            continue
        if rel not in fresh:
            lines.append(f"extra {shown}")
            continue
        data = _read_capped(os.path.join(out_dir, rel))  # regular files within the size cap only
        if data == fresh[rel]:
            continue
        version = None if data is None else _version_of(rel, data) if rel != MANIFEST else _manifest_version(data)
        if version is not None and version != __version__:
            lines.append(f"stale version {shown} (generated by coefgen {version}, installed {__version__})")
        else:
            lines.append(f"changed {shown}")
    return lines


def clean_stale_check_dirs(base: str | None = None) -> list:
    """Remove ``coefgen-check-<pid>-*`` directories (of this user) whose process is gone."""
    base = base or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        m = re.fullmatch(re.escape(CHECK_TMP_PREFIX) + r"(\d{1,10})-[A-Za-z0-9_]+", name)
        if not m or pid_alive(int(m.group(1))):
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            shutil.rmtree(path)
            removed.append(path)
        except OSError:
            pass
    return removed


def display_path(path: str) -> str:
    """``path`` relative to the current directory when it lies below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - other drive on Windows
        return path
    return rel if not rel.startswith("..") else path


def _manifest_version(data: bytes):
    from .payload import MAX_MANIFEST_JSON_VALUES, parse_json

    try:
        return parse_json(data, MANIFEST, max_values=MAX_MANIFEST_JSON_VALUES).get("generator_version")
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------- summary

def summary_table(result: BuildResult) -> str:
    """Per table: K, estimator, certified bias bound, bias / E*_K, sup m, time."""
    rows = [("table", "K", "estimator", "bias bound", "bias/E*_K", "sup m", "time")]
    for r in result.results:
        s = r.summary or {}
        bias = s.get("bias_bound")
        level = s.get("minimax_level")
        try:
            ratio = f"{float(bias) / float(level):.3f}" if float(level) > 0 else "exact"
        except (TypeError, ValueError):
            ratio = "-"
        time_s = {"cached": "cached", "failed": "FAILED"}.get(r.status, f"{r.seconds:.2f}s")
        rows.append((r.request.table_id, str(r.request.K), r.request.estimator, _sci(bias), ratio,
                     _sci(s.get("mse_bound")), time_s))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for j, row in enumerate(rows):
        out.append("  ".join(cell.ljust(widths[i]) if i in (0, 2) else cell.rjust(widths[i])
                             for i, cell in enumerate(row)).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _sci(x) -> str:
    try:
        return f"{float(x):.3e}"
    except (TypeError, ValueError):
        return "-"
