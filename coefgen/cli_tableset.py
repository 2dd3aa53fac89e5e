"""CLI commands for table sets (issue 6): ``build``, ``check``, ``plot``.

``register(main)`` adds them to the click group of coefgen.cli. Errors are raised as
InputError (exit 2) / CheckError (exit 1); the group turns them into one-line messages.
"""

from __future__ import annotations

import os
import sys

import click

from .cli_types import ASCII_INT
from .errors import CheckError, InputError

_CONFIG_HELP = ("Table-set spec (coefgen.yaml); its 'output' is relative to the file. "
                "Default: the embedded default set, output relative to the current directory.")


def _paths(**named):
    """InputError (exit 2) for an empty path given to an option (issue 20.13): ``--out ''`` must
    not silently mean the current directory's default output."""
    for option, value in named.items():
        if value is not None and not str(value).strip():
            raise InputError(f"{option}: the path is empty")
        if option == "--out" and value == "-":  # one rule: '-' is standard output, which a table set cannot be
            raise InputError("--out -: '-' means standard output, and a table set is a directory "
                             "(./- for a directory named '-')")


def _jobs(jobs):
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")
    return jobs


@click.command()
@click.option("--config", "-c", "config", default=None, type=click.Path(dir_okay=False), help=_CONFIG_HELP)
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Output directory (overrides the spec's 'output').")
@click.option("--jobs", "-j", type=ASCII_INT, default=None, help="Parallel solver processes (default: the CPU count).")
@click.option("--quiet", "-q", is_flag=True, help="No progress, no summary (errors only).")
@click.option("--force", is_flag=True, help="Re-solve every table even if it is up to date.")
@click.option("--prune", is_flag=True, help="Delete files in the output directory that the spec does not produce.")
def build(config, out, jobs, quiet, force, prune):
    """Build every table of a table set, incrementally, with a manifest.

    Tables whose inputs and coefgen version are unchanged and whose files are intact are
    not re-solved. Writes are atomic and the manifest is updated after every table, so an
    interrupted build keeps everything it finished. Runs verify on what it writes.
    """
    from .build import Interrupted, build as run_build, display_path, summary_table
    from .spec import load_spec

    _paths(**{"--config": config, "--out": out})
    spec = load_spec(config)  # every error, with file:line, before any solving
    try:
        result = run_build(spec, out, jobs=_jobs(jobs), quiet=quiet, force=force, prune=prune)
    except Interrupted as e:
        click.echo(f"coefgen: {e}", err=True)
        sys.exit(130)
    if not quiet:
        if result.solved:
            click.echo(summary_table(result))
        click.echo(f"{len(result.results)} table(s) in {display_path(result.out_dir)}: {len(result.solved)} solved, "
                   f"{len(result.cached)} up to date ({result.seconds:.2f}s)", err=True)
        if not result.failures:
            click.echo(set_summary(spec, result.out_dir, config is None), err=True)
        for f in result.pruned:
            click.echo(f"pruned {display_path(os.path.join(result.out_dir, f))}", err=True)
        for f in result.extras:
            why = ("not written by coefgen: --prune leaves it alone" if prune
                   else "not in the spec; --prune deletes it if coefgen wrote it")
            click.echo(f"extra {display_path(os.path.join(result.out_dir, f))} ({why})", err=True)
    for line in result.failures:
        click.echo(f"FAILED {line}", err=True)
    if result.failures:
        raise CheckError(f"{len(result.failures)} table(s) failed; {len(result.solved)} solved and "
                         f"{len(result.cached)} up to date are in {display_path(result.out_dir)}")
    _sync_package_tables(spec, result.out_dir, config is None, quiet)


def _sync_package_tables(spec, out_dir, default_spec, quiet):
    """The default set built into the checkout's tables/: refresh coefgen/default_tables/ too."""
    from .package_data import is_checkout_tables_dir, sync

    if not default_spec or "json" not in spec.formats or not is_checkout_tables_dir(out_dir):
        return
    written, removed = sync(out_dir)
    if (written or removed) and not quiet:
        click.echo(f"coefgen/default_tables (the copy inside the package): {len(written)} file(s) written, "
                   f"{len(removed)} removed", err=True)


def _k_ranges(ks) -> str:
    """2, 3, 4, 8, 9 -> '2..4, 8, 9' (runs of three or more become ranges)."""
    ks = sorted(set(ks))
    out, i = [], 0
    while i < len(ks):
        j = i
        while j + 1 < len(ks) and ks[j + 1] == ks[j] + 1:
            j += 1
        out += [f"{ks[i]}..{ks[j]}"] if j - i >= 2 else [str(k) for k in ks[i:j + 1]]
        i = j + 1
    return ", ".join(out)


def set_summary(spec, out_dir, default_spec: bool) -> str:
    """What the set holds (one line per table family) and the one line a trainer uses next."""
    from .build import display_path

    families: dict[str, list] = {}
    for req in spec.tables:
        head = req.table_id.rpartition("-K")[0]
        families.setdefault(head, []).append(req.K)
    width = max((len(h) for h in families), default=0)
    lines = ["the set:"] + [f"  {h.ljust(width)}  K = {_k_ranges(ks)}" for h, ks in families.items()]
    if default_spec:
        lines.append('next, in a trainer: coefgen.runtime.default_table("kl", K=8, baseline="mean")  '
                     '(K = your group size; README "Which table")')
    elif spec.tables:
        first = spec.tables[0].table_id
        lines.append(f'next, in a trainer: coefgen.runtime.load("{display_path(os.path.join(out_dir, first))}.json")'
                     if "json" in spec.formats else f"next: include {display_path(out_dir)}/coefgen_tables.h")
    return "\n".join(lines)


@click.command()
@click.option("--config", "-c", "config", default=None, type=click.Path(dir_okay=False), help=_CONFIG_HELP)
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Directory to check (default: the spec's 'output').")
@click.option("--jobs", "-j", type=ASCII_INT, default=None, help="Parallel solver processes (default: the CPU count).")
@click.option("--quiet", "-q", is_flag=True, help="No progress (differences are still printed).")
def check(config, out, jobs, quiet):
    """Rebuild the set in a temporary directory and compare byte for byte (for CI).

    Exit 1 with one line per difference (changed, missing, extra, stale version FILE);
    exit 0 when the directory is exactly what this coefgen builds.
    """
    from .build import Interrupted, check as run_check
    from .spec import load_spec

    _paths(**{"--config": config, "--out": out})
    spec = load_spec(config)
    target = out or spec.output
    try:
        lines = run_check(spec, target, jobs=_jobs(jobs), quiet=quiet)
    except Interrupted as e:
        click.echo(f"coefgen: {e}", err=True)
        sys.exit(130)
    for line in lines:
        click.echo(line)
    if lines:
        force = any(line.startswith("changed ") for line in lines)
        raise CheckError(f"{target} differs from what coefgen would build ({len(lines)} difference(s)); "
                         + ("run `coefgen build --force` (a hand-edited file whose sha256 and manifest were also "
                            "changed looks up to date to a plain build)" if force else "run `coefgen build`")
                         + " and commit the result")
    if not quiet:
        click.echo(f"ok: {target} is up to date ({len(spec.tables)} table(s))", err=True)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, help="PNG file to write.")
def plot(files, output):
    """Plot weighted bias b(p) and weighted variance v(p) of table files against p.

    One curve per table, p on a log axis from 1e-6 to 1; certified bounds from the files
    as dashed lines.
    """
    from .plot import plot_tables
    from .runtime import TableError, load
    from .writers import check_outputs

    _paths(**{"FILE": f for f in files if not f.strip()})
    check_outputs([("-o/--output", output, "binary")], [("table", f) for f in files])
    tables = []
    for path in files:
        try:
            tables.append(load(path))
        except TableError as e:
            raise InputError(str(e)) from None
    plot_tables([t.payload for t in tables], output)
    click.echo(f"wrote {output}", err=True)


def register(main: click.Group) -> None:
    for cmd in (build, check, plot):
        main.add_command(cmd)
