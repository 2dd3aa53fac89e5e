"""``coefgen bon``: reading a reference, running the sweep, writing text / JSON / PNG.

The mathematics is in ``coefgen.bon``; this module does the I/O and the formatting.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

import numpy as np

from . import bon
from .errors import InputError

MAX_REFERENCE_BYTES = 64 * 2**20  # a reference file larger than this is refused
MAX_TEXT_ROWS = 40  # a longer sweep prints a log-spaced selection of its rows
MAX_TEXT_OUTPUTS = 20  # --per-output prints the outputs of the highest rewards
FAMILIES = ("uniform:", "zipf:", "geometric:")


def read_reference(text: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(probs, rewards, description) from a family name or a JSON/CSV file (validated)."""
    if text.startswith(FAMILIES) and not os.path.exists(text):
        probs, rewards = bon.reference_family(text)
        return probs, rewards, {"source": text}
    if not os.path.isfile(text):
        raise InputError(f"--reference {text!r}: no such file, and not a family (uniform:N, zipf:s:N, geometric:r:N)")
    size = os.path.getsize(text)
    if size > MAX_REFERENCE_BYTES:
        raise InputError(f"{text}: {size} bytes, above the cap MAX_REFERENCE_BYTES = {MAX_REFERENCE_BYTES}")
    try:
        with open(text, "rb") as fh:
            raw = fh.read(MAX_REFERENCE_BYTES + 1)
        data = raw.decode("utf-8-sig")
    except OSError as e:
        raise InputError(f"{text}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{text}: not UTF-8 text (expected JSON or CSV)") from None
    if text.lower().endswith(".json") or data.lstrip().startswith("{"):
        probs, rewards = _parse_json(data, text)
    else:
        probs, rewards = _parse_csv(data, text)
    if len(probs) > bon.MAX_OUTCOMES:
        raise InputError(f"{text}: {len(probs)} outcomes, above the cap MAX_OUTCOMES = {bon.MAX_OUTCOMES}")
    try:
        p, r = bon.check_reference(probs, rewards)
    except InputError as e:
        raise InputError(f"{text}: {e}") from None
    return p, r, {"source": os.path.basename(text)}


def _number(x, where: str, path: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InputError(f"{path}: {where} is {json.dumps(x)[:40]}, not a number")
    try:
        return float(x)
    except OverflowError:  # a 400-digit integer
        raise InputError(f"{path}: {where} is an integer of {len(str(abs(x)))} digits, beyond float64") from None


_NON_FINITE = ("nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity")


def _csv_number(text: str) -> float:
    """A CSV field as a float by the strict file-number grammar (ASCII digits, no '_', caps
    checked before converting; spec_numbers.parse_file_number); nan/inf are read as such and
    refused with their position by check_reference. ValueError otherwise."""
    from .spec_numbers import parse_file_number

    t = text.strip()
    if t.lower() in _NON_FINITE:
        return float(t)
    parse_file_number(t)
    return float(t)


def _parse_json(data: str, path: str):
    from .payload import DuplicateKeyError, _no_duplicates, json_values_upper_bound

    cap = 2 * bon.MAX_OUTCOMES + 8  # probs and rewards: checked before parsing, so memory stays bounded
    if json_values_upper_bound(data) > cap:
        raise InputError(f"{path}: more than {cap} JSON values (2 x MAX_OUTCOMES = {bon.MAX_OUTCOMES} outcomes)")
    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except DuplicateKeyError as e:
        raise InputError(f"{path}: invalid JSON ({e}: which one counts is ambiguous)") from None
    except RecursionError:
        raise InputError(f"{path}: invalid JSON (nested too deeply)") from None
    except ValueError as e:
        raise InputError(f"{path}: invalid JSON ({str(e)[:120]})") from None
    if not isinstance(doc, dict) or "probs" not in doc or "rewards" not in doc:
        raise InputError(f'{path}: expected a JSON object {{"probs": [...], "rewards": [...]}}')
    extra = sorted(set(doc) - {"probs", "rewards"})
    if extra:
        raise InputError(f"{path}: unexpected key {extra[0]!r} (only \"probs\" and \"rewards\")")
    out = []
    for key in ("probs", "rewards"):
        seq = doc[key]
        if not isinstance(seq, list):
            raise InputError(f"{path}: \"{key}\" must be a list of numbers")
        out.append([_number(x, f"{key}[{i}]", path) for i, x in enumerate(seq)])
    return out[0], out[1]


def _parse_csv(data: str, path: str):
    rows = csv.reader(io.StringIO(data))
    header = None
    probs, rewards = [], []
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as e:  # a field over csv.field_size_limit() (128 KiB), a NUL byte, ...
            raise InputError(f"{path}: line {rows.line_num}: not a valid CSV row ({str(e)[:120]})") from None
        line = rows.line_num
        if not row or all(not f.strip() for f in row):
            continue
        if header is None:
            header = [f.strip().lower() for f in row]
            if sorted(header) != ["prob", "reward"]:
                raise InputError(f"{path}: line {line}: CSV header must be prob,reward, got {','.join(row)[:60]!r}")
            ip, ir = header.index("prob"), header.index("reward")
            continue
        if len(row) != 2:
            raise InputError(f"{path}: line {line}: expected 2 fields (prob,reward), got {len(row)}")
        try:
            probs.append(_csv_number(row[ip]))
            rewards.append(_csv_number(row[ir]))
        except ValueError:
            raise InputError(f"{path}: line {line}: {','.join(row)[:60]!r} is not two numbers") from None
        if len(probs) > bon.MAX_OUTCOMES:
            raise InputError(f"{path}: more than MAX_OUTCOMES = {bon.MAX_OUTCOMES} outcomes")
    if header is None:
        raise InputError(f"{path}: empty CSV (expected a header prob,reward and one row per outcome)")
    return probs, rewards


def describe_reference(ref: bon.BonReference, probs: np.ndarray, source: dict) -> dict:
    top = ref.n_classes - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = float(-np.sum(ref.eps * np.log(ref.eps)))
    return {
        **source,
        "outcomes": int(probs.size),
        "support": ref.n_outputs,
        "tie_classes": ref.n_classes,
        "prob_sum": math.fsum(probs.tolist()),
        "top_class_prob": float(ref.q[top]),
        "max_prob": float(ref.eps.max()),
        "entropy": ent,
    }


def sweep_document(ref: bon.BonReference, ns, reference: dict, per_output: bool) -> dict:
    sw = bon.bon_sweep(ref, ns)
    rows = []
    for i in range(sw["n"].size):
        row = {"n": int(sw["n"][i])}
        for key in ("kl", "kl_bound", "kl_estimator", "win_rate", "win_rate_bound"):
            row[key] = float(sw[key][i])
        row["kl_gap"] = row["kl_bound"] - row["kl"]
        row["kl_estimator_error"] = row["kl_estimator"] - row["kl"]
        rows.append(row)
    if per_output:
        po = bon.bon_per_output(ref, int(sw["n"][0]))
        rows[0]["outputs"] = [
            {"index": int(po["index"][j]), "prob": float(po["prob"][j]), "reward": float(po["reward"][j]),
             "bon_prob": float(po["bon_prob"][j]), "kl_estimator": float(po["kl_estimator"][j])}
            for j in range(po["index"].size)
        ]
    return {"reference": reference, "sweep": rows}


def _shown_rows(m: int) -> list[int]:
    if m <= MAX_TEXT_ROWS:
        return list(range(m))
    idx = np.unique(np.round(np.geomspace(1, m, MAX_TEXT_ROWS - 1)).astype(int) - 1)
    return sorted(set(idx.tolist()) | {m - 1})


def _z(x: float, digits: int) -> float:
    """x rounded for display, with −0 shown as 0."""
    return round(x, digits) + 0.0


def summary_text(doc: dict) -> str:
    ref = doc["reference"]
    lines = [
        f"reference {ref['source']}: {ref['outcomes']} outcomes, {ref['tie_classes']} distinct rewards, "
        f"P_ref(top reward) = {ref['top_class_prob']:.6g}, entropy {ref['entropy']:.6g} nats",
        "ties broken uniformly among the tied draws; win rate counts a tie as 1/2",
        "",
        f"{'n':>7} {'KL':>11} {'bound':>11} {'gap':>11} {'E[KL_hat]':>11} {'KL_hat-KL':>11} {'win rate':>9} {'n/(n+1)':>9}",
    ]
    rows = doc["sweep"]
    shown = _shown_rows(len(rows))
    for i in shown:
        r = rows[i]
        lines.append(f"{r['n']:>7} {_z(r['kl'], 6):>11.6f} {r['kl_bound']:>11.6f} {r['kl_gap']:>11.3e} "
                     f"{_z(r['kl_estimator'], 6):>11.6f} {r['kl_estimator_error']:>11.3e} {r['win_rate']:>9.6f} "
                     f"{r['win_rate_bound']:>9.6f}")
    if len(shown) < len(rows):
        lines.append(f"(showing {len(shown)} of {len(rows)} values of n; --json for all)")
    outs = rows[0].get("outputs")
    if outs is not None:
        top = sorted(outs, key=lambda o: (-o["reward"], o["index"]))[:MAX_TEXT_OUTPUTS]
        lines += ["", f"per output at n = {rows[0]['n']} (highest rewards first"
                  + (f", {len(top)} of {len(outs)}" if len(top) < len(outs) else "") + "):",
                  f"{'index':>7} {'reward':>12} {'pi_ref':>12} {'pi_n':>12} {'KL_hat(pi_ref)':>15}"]
        for o in top:
            lines.append(f"{o['index']:>7} {o['reward']:>12.6g} {o['prob']:>12.6g} {o['bon_prob']:>12.6g} "
                         f"{o['kl_estimator']:>15.6f}")
    return "\n".join(lines)


def run(reference: str, n_text: str, json_path: str | None, png_path: str | None, per_output: bool):
    """The whole command: returns (text for stdout or None, list of files written)."""
    from .writers import STDOUT, check_outputs, write_atomic

    is_file = not (reference.startswith(FAMILIES) and not os.path.exists(reference))
    check_outputs([("--json", json_path, "text"), ("-o/--output", png_path, "binary")],
                  [("reference", reference)] if is_file else [])  # before reading or computing
    ns = bon.parse_n(n_text)
    if per_output and len(ns) != 1:
        raise InputError(f"--per-output needs one n, got {len(ns)} values of n")
    probs, rewards, source = read_reference(reference)
    ref = bon.prepare_reference(probs, rewards)
    doc = sweep_document(ref, ns, describe_reference(ref, probs, source), per_output)
    written = []
    payload = (json.dumps(doc, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    if png_path is not None:
        from .plot_bon import plot_bon

        plot_bon(doc, png_path)
        written.append(png_path)
    if json_path is not None and json_path != STDOUT:
        write_atomic(json_path, payload)
        written.append(json_path)
    if json_path == STDOUT:
        return payload.decode("utf-8"), written
    return summary_text(doc) + "\n", written
