"""The default table set inside the package: ``coefgen/default_tables/`` (compiler side).

A base install (``pip install coefgen``, numpy only) ships the default set's JSON tables and a
manifest listing them, so that a trainer loads a default table without a file path or a clone
(``coefgen.runtime.default_table``). The directory is committed, and kept equal to the
checkout's ``tables/`` by the compiler: building the default set into the checkout's
``tables/`` (``make run``, ``coefgen build --out tables``) refreshes it. Its contents are a
pure function of ``tables/``:

* every ``*.json`` table of ``tables/manifest.json``, byte for byte;
* ``manifest.json``: the same manifest (schema, generator version, records) restricted to the
  JSON files, as canonical JSON (so ``coefgen verify coefgen/default_tables/manifest.json``
  re-proves the package copy, and a loader checks each file's sha256 against it).

Why a committed copy rather than a build hook: an editable install (``make venv``) imports the
package from the source tree, so the directory must exist there; sdists, wheels and editable
installs then all carry the same bytes with no custom build code; and the byte-identity with
``tables/`` is a test (``tests/test_install_split.py``), not a hope.
"""

from __future__ import annotations

import json
import os

from .payload import canonical_json

PACKAGE_TABLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_tables")
MANIFEST = "manifest.json"


def checkout_tables_dir() -> str | None:
    """``<checkout>/tables`` when this coefgen is imported from a source checkout, else None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(root, "pyproject.toml")) and os.path.isdir(os.path.join(root, "tables")):
        return os.path.join(root, "tables")
    return None


def is_checkout_tables_dir(path: str) -> bool:
    ref = checkout_tables_dir()
    return ref is not None and os.path.realpath(path) == os.path.realpath(ref)


def package_files(tables_dir: str) -> dict[str, bytes]:
    """The files ``coefgen/default_tables/`` must hold for the set in ``tables_dir``: name -> bytes."""
    with open(os.path.join(tables_dir, MANIFEST), "rb") as fh:
        manifest = json.loads(fh.read().decode("utf-8"))
    records = [r for r in manifest["files"] if r.get("format") == "json"]
    out = {}
    for rec in records:
        with open(os.path.join(tables_dir, rec["path"]), "rb") as fh:
            out[rec["path"]] = fh.read()
    doc = {"schema": manifest["schema"], "generator_version": manifest["generator_version"],
           "files": sorted(records, key=lambda r: r["path"])}
    out[MANIFEST] = canonical_json(doc).encode("utf-8")
    return out


def sync(tables_dir: str, dest: str = PACKAGE_TABLES) -> tuple[list, list]:
    """Make ``dest`` hold exactly ``package_files(tables_dir)``; returns (written, removed) names.

    Writes are atomic (temporary file + rename); only ``*.json`` files are ever removed."""
    from .writers import write_atomic

    want = package_files(tables_dir)
    os.makedirs(dest, exist_ok=True)
    written, removed = [], []
    for name in sorted(want):
        path = os.path.join(dest, name)
        try:
            with open(path, "rb") as fh:
                same = fh.read() == want[name]
        except OSError:
            same = False
        if not same:
            write_atomic(path, want[name])
            written.append(name)
    for name in sorted(os.listdir(dest)):
        if name.endswith(".json") and name not in want and os.path.isfile(os.path.join(dest, name)):
            os.unlink(os.path.join(dest, name))
            removed.append(name)
    return written, removed


if __name__ == "__main__":  # python -m coefgen.package_data: refresh the package copy by hand
    src = checkout_tables_dir()
    if src is None:
        raise SystemExit("coefgen: error: not a source checkout (no tables/ beside the package)")
    w, r = sync(src)
    print(f"coefgen/default_tables: {len(w)} file(s) written, {len(r)} removed")
