"""The ``coefgen`` command line (click). I/O and argument handling only.

Errors: a one-line message on stderr and exit 2 for bad input, 1 for a failed check;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys

from .canonical import pin_numerics

pin_numerics()  # before anything imports numpy: the same bytes on every x86-64 machine

import click  # noqa: E402

from . import __version__
from .cli_types import ASCII_INT  # noqa: E402
from .errors import CheckError, CoefgenError, InputError


class CoefgenGroup(click.Group):
    """Turns CoefgenError (and stray exceptions) into one-line messages unless --debug."""

    def invoke(self, ctx):
        import warnings

        try:
            with warnings.catch_warnings():
                if "--debug" not in sys.argv[1:2]:
                    # numpy's overflow/invalid RuntimeWarnings on hostile values are noise on stderr: the
                    # checks report what they mean (a non-finite bound fails its claim), in one line
                    warnings.simplefilter("ignore", RuntimeWarning)
                return super().invoke(ctx)
        except CoefgenError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"coefgen: error: {_one_line(e)}", err=True)
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except (MemoryError, RecursionError) as e:  # an input too large or too deep: bad input (issue 20.12)
            if ctx.obj and ctx.obj.get("debug"):
                raise
            what = ("ran out of memory: the input is too large for this machine" if isinstance(e, MemoryError)
                    else "the input is nested too deeply")
            click.echo(f"coefgen: error: {what} (reduce it; see the caps in docs/limits.md)", err=True)
            ctx.exit(2)
        except Exception as e:  # noqa: BLE001 - last resort: never a traceback without --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"coefgen: internal error: {type(e).__name__}: {_one_line(e)} (rerun with --debug for the traceback)",
                       err=True)
            ctx.exit(1)


MAX_MESSAGE_CHARS = 1000


def _no_empty_paths(files) -> None:
    """An empty file argument is bad input (exit 2), not a file that failed its check."""
    if any(not str(f).strip() for f in files):
        raise InputError("FILE: the path is empty")


def _one_line(e) -> str:
    """The message on one line, at most MAX_MESSAGE_CHARS characters (a 100 KB name is elided)."""
    text = " ".join(str(e).splitlines())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + f"... ({len(text)} characters)"
    return text


@click.group(cls=CoefgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coefgen")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx, debug):
    """Compile coefficient tables t[1..K] for unbiased answer-level rewards.

    A sample whose answer was given by c of the K samples of its group gets reward t[c].
    See `coefgen COMMAND --help`.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@main.command()
@click.option("--divergence", "-d", required=True, help="Reward name: kl, euclidean, alpha:<a>, poly:<c0>,<c1>,...")
@click.option("--K", "K", required=True, type=ASCII_INT, help="Group size (samples per prompt), 2 <= K <= 2048.")
@click.option("--estimator", "-e", required=True, type=click.Choice(["exact", "minimax", "aqp", "plugin", "digamma"]),
              help="exact (polynomial rewards), minimax, aqp (variance-optimal under a bias budget), plugin, digamma.")
@click.option("--tau", default=None, help="aqp: bias budget tau * E*_K, tau >= 1 (default 10).")
@click.option("--objective", default=None, type=click.Choice(["worst", "mean"]), help="aqp: sup of m(p) or its integral.")
@click.option("--max-mse", "max_mse", default=None,
              help="aqp: minimise the bias subject to sup m <= V (a number, 'plugin', or '<k>plugin': k times the plug-in's).")
@click.option("--gamma", default=None, help="aqp with --max-mse: weight the bias by p^gamma, 0 < gamma <= 1 (default 1).")
@click.option("--monotone", is_flag=True, default=None, help="aqp: require t_1 <= ... <= t_K.")
@click.option("--baseline", default="none", type=click.Choice(["none", "loo", "mean"]),
              help="The group baseline your trainer subtracts: none, loo (leave-one-out, RLOO) or mean (GRPO, "
                   "Dr.GRPO). Under loo/mean the table is the K-1 solution padded with t_K = t_(K-1).")
@click.option("--format", "fmt", default="json", type=click.Choice(["json", "npz", "c"]), help="Output format.")
@click.option("-o", "--output", required=True, help="Output file, or - for stdout (json or c).")
def solve(divergence, K, estimator, tau, objective, max_mse, gamma, monotone, baseline, fmt, output):
    """Solve, certify and write one table."""
    from .compiler import compile_table, precheck
    from .writers import check_outputs, render, write_atomic

    params = {}
    if estimator == "aqp":
        params = {"tau": tau, "objective": objective, "max_mse": max_mse,  # validated by precheck
                  "gamma": gamma, "monotone": monotone or None}
    elif tau is not None or objective is not None or max_mse is not None or gamma is not None or monotone:
        raise InputError(f"--tau/--objective/--max-mse/--gamma/--monotone apply to --estimator aqp only, not {estimator}")
    if output == "-" and fmt == "npz":
        raise InputError("NPZ is binary: give a file with -o, or choose --format json or c for stdout")
    precheck(divergence, K, estimator, params, baseline)  # fail fast, before any solving
    check_outputs([("-o/--output", output, "binary" if fmt == "npz" else "text")])  # before solving
    payload = compile_table(divergence, K, estimator, params, baseline, parallel_level=True)
    data = render(payload, fmt, __version__)
    if output == "-":
        sys.stdout.write(data.decode("utf-8"))
    else:
        write_atomic(output, data)
        click.echo(f"wrote {output} ({payload['table_id']}, sha256 {payload['sha256'][:12]})", err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def show(files):
    """Print a readable summary of table files (JSON or NPZ)."""
    from .runtime import TableError, load
    from .summary import describe

    _no_empty_paths(files)
    for i, path in enumerate(files):
        try:
            table = load(path)
        except TableError as e:
            raise InputError(str(e)) from None
        if i:
            click.echo("")
        click.echo(describe(table.payload, path))


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def verify(files):
    """Re-certify table files from their float64 values; exit 1 if a claim fails."""
    from .verify import _manifest, verify_file

    _no_empty_paths(files)
    failures = []
    for path in files:
        lines = verify_file(path)
        failures += lines
        if not lines:
            doc = _manifest(path)
            if doc is None:
                click.echo(f"ok {path}")
            else:  # a set: say how much was re-proven
                recs = doc["files"]
                tables = {r.get("table_id") for r in recs if r.get("table_id")}
                click.echo(f"ok {path}: {len(recs)} file(s) intact, the claims of {len(tables)} table(s) re-proven")
    for line in failures:
        click.echo(line, err=True)
    if failures:
        raise CheckError(f"{len(failures)} claim(s) failed in {len(files)} file(s)")


@main.command()
@click.option("--divergence", "-d", required=True, help="Reward name (see solve --help).")
@click.option("--K", "K", required=True, type=ASCII_INT, help="Group size K >= 2.")
@click.option("--digits", type=ASCII_INT, default=None, help="Proven significant digits wanted (default: >= 20 up to K = 256).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
def level(divergence, K, digits, as_json):
    """The minimax level E*_K = min sup |p (T(p) - r(p))| with a proven bracket."""
    from .compiler import check_K, check_K_level, level_json
    from .rewards import parse_reward
    from .solvers.minimax import minimax_level

    reward = parse_reward(divergence)
    K = check_K(K)
    check_K_level(reward, K)
    if digits is not None and not 1 <= digits <= 200:
        raise InputError(f"--digits must be between 1 and 200, got {digits}")
    if digits is not None:
        from .solvers.minimax import check_level_work

        check_level_work(K, digits)  # named cap on K^2 x digits, before any work
    lev = minimax_level(reward, K, digits)
    doc = level_json(lev)
    if as_json:
        click.echo(json.dumps(doc, sort_keys=True))
    else:
        click.echo(f"E*_{K}({reward.name}) = {doc['level']}")
        click.echo(f"  bracket [{doc['lower']}, {doc['upper']}]  ({doc['digits']} proven digits)")


@main.command()
@click.option("--divergence", "-d", required=True, help="Reward name (see solve --help).")
@click.option("--K", "K", required=True, type=ASCII_INT, help="Group size K >= 2.")
@click.option("-o", "--output", required=True, help="PNG file for the plot.")
@click.option("--json", "json_path", default=None, help="Also write the frontier points as JSON (- for stdout).")
def frontier(divergence, K, output, json_path):
    """Sweep the AQP bias budget tau and plot sup|b| against sup m."""
    from .compiler import check_K, check_K_level
    from .frontier import frontier_points, plot_frontier  # noqa: I001
    from .payload import canonical_json
    from .rewards import parse_reward
    from .writers import write_atomic

    from .frontier import check_frontier_K

    reward = parse_reward(divergence)
    K = check_K(K)
    check_K_level(reward, K)
    if reward.is_polynomial and reward.degree <= K - 1:
        raise InputError(f"{reward.name} has an exact (unbiased) table at K={K}: there is no bias-variance trade-off to plot")
    check_frontier_K(K)
    from .writers import STDOUT, check_outputs

    check_outputs([("-o/--output", output, "binary"), ("--json", json_path, "text")])  # before the sweep
    from .build import Progress
    from .frontier import frontier_steps

    steps = frontier_steps(reward)
    progress = Progress(steps, "frontier", False)  # a bar on a terminal, a line per point otherwise
    progress.redraw()
    try:
        points = frontier_points(reward, K, on_step=lambda i, sec, ok: progress.finished(steps[i], sec, ok))
    finally:
        progress.close()
    plot_frontier(points, output, title=f"{reward.name}, K = {K}")
    data = canonical_json({"divergence": reward.name, "K": K, "points": points})
    if json_path == STDOUT:
        sys.stdout.write(data)
    elif json_path is not None:
        write_atomic(json_path, data.encode())
    click.echo(f"wrote {output}" + (f" and {json_path}" if json_path not in (None, STDOUT) else ""), err=True)


def _register_tableset_commands():
    """build / check / plot live in cli_tableset (table sets, issue 6)."""
    from .cli_tableset import register

    register(main)


_register_tableset_commands()


@main.command()
@click.option("--reference", "-r", required=True,
              help="A JSON file {\"probs\": [...], \"rewards\": [...]}, a CSV file with header prob,reward, "
                   "or a family: uniform:N, zipf:s:N (prob ∝ i^-s), geometric:r:N (prob ∝ r^(i-1)); a family's "
                   "outcome i = 1..N has reward i, so s > 0 / r < 1 make the best outcome the rarest and "
                   "s < 0 / r > 1 the most likely (ties only via files). Probabilities must sum to 1 within 1e-9.")
@click.option("--n", "n_text", default="1..64", show_default=True,
              help="Best-of-n draws: one n, a range A..B (every integer) or a list A,B,C; 1 <= n <= 10^9.")
@click.option("--json", "json_path", default=None, help="Write the sweep as JSON to this file (- for stdout).")
@click.option("-o", "--output", default=None, help="PNG: win rate against KL for the sweep, with the bounds' curve.")
@click.option("--per-output", is_flag=True, help="With one n: also give pi_n(y) and KL_hat(pi_ref(y)) per outcome.")
def bon(reference, n_text, json_path, output, per_output):
    """Best-of-n against a discrete reference: exact KL and win rate, their bounds, and the
    paper's KL estimator (Beirami et al. 2024).

    Ties among the top draws are broken uniformly at random, so within a tie class pi_n is
    proportional to pi_ref; a tie counts 1/2 in the win rate.
    """
    from .cli_bon import run

    text, written = run(reference, n_text, json_path, output, per_output)
    sys.stdout.write(text)
    if written:
        click.echo("wrote " + " and ".join(written), err=True)


def _register_game_command():
    """game lives in cli_game (the alignment game, issue 10)."""
    from .cli_game import game

    main.add_command(game)


_register_game_command()

if __name__ == "__main__":  # pragma: no cover
    main()
