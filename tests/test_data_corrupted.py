"""Property: a corrupted copy of the bundled data is either read (and then holds together) or refused with a
ValueError that names the file and the line; never any other exception (issue 13)."""

import math
import re
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcvdyn.estimate.data import read_viral_loads
from hcvdyn.estimate.layouts import MAX_LOG10_VL

ROOT = Path(__file__).resolve().parents[1]
LONG = (ROOT / "fits/tcl_recovery.csv").read_text().splitlines()
HEADER = next(i for i, line in enumerate(LONG) if not line.startswith("#"))


def nonmem(lines):
    """The same data as a whitespace-delimited NONMEM table (censored DV written '.', LLOQ in IU/mL)."""
    names = {"id": "ID", "time_days": "TIME", "log10_vl": "DV", "cens": "CENS", "lloq": "LLOQ"}
    rows = [line.split(",") for line in lines[HEADER:]]
    return ["  ".join(names.get(c, c.upper()) for c in rows[0])] + ["  ".join(c or "." for c in r) for r in rows[1:]]


BASES = {"long": LONG[HEADER:], "long with comments": LONG, "nonmem": nonmem(LONG)}
STRAY = ["nan", "inf", "-inf", "NaN", "1e309", "-1", "-0.5", "", ".", "<15", "<0", "TND", "abc", '"', "1,5", "\ufeff",
         "3000000", "1.1761", "10.5", "#", "1e-400", "0.0e400"]
OPS = ("delete cell", "empty cell", "swap cells", "swap columns", "stray text", "not finite", "negative", "duplicate row",
       "delete row", "stray line", "bom", "mixed delimiter", "all tabs", "line ends")


@st.composite
def corrupted(draw):
    """(text, what was done): 1-4 corruptions of one writing of the bundled data."""
    base = draw(st.sampled_from(sorted(BASES)))
    lines, sep = list(BASES[base]), "  " if base == "nonmem" else ","
    first = 0 if base != "long with comments" else HEADER
    done, newline = [base], "\n"
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(OPS))
        i = draw(st.integers(first, len(lines) - 1))
        cells = lines[i].split(sep)
        j, k = draw(st.integers(0, len(cells) - 1)), draw(st.integers(0, len(cells) - 1))
        done.append(f"{op} at {i + 1}")
        if op == "delete cell":
            del cells[j]
        elif op == "empty cell":
            cells[j] = ""
        elif op == "swap cells":
            cells[j], cells[k] = cells[k], cells[j]
        elif op == "swap columns":
            for n in range(first, len(lines)):
                row = lines[n].split(sep)
                if max(j, k) < len(row):
                    row[j], row[k] = row[k], row[j]
                lines[n] = sep.join(row)
            continue
        elif op == "stray text":
            cells[j] = draw(st.one_of(st.sampled_from(STRAY), st.text(max_size=6)))
        elif op == "not finite":
            cells[j] = draw(st.sampled_from(["nan", "inf", "-inf", "Infinity", "1e999"]))
        elif op == "negative":
            cells[j] = "-" + cells[j]
        elif op == "duplicate row":
            lines.insert(i, lines[i])
            continue
        elif op == "delete row":
            del lines[i]
            continue
        elif op == "stray line":
            lines.insert(i, draw(st.text(max_size=20)))
            continue
        elif op == "bom":
            lines[i] = "\ufeff" + lines[i] if draw(st.booleans()) else lines[i]
            lines[0] = "\ufeff" + lines[0]
            continue
        elif op == "mixed delimiter":
            lines[i] = lines[i].replace(sep, draw(st.sampled_from(["\t", " ", ",", ";"])))
            continue
        elif op == "all tabs":
            lines, sep = [line.replace(sep, "\t") for line in lines], "\t"
            continue
        elif op == "line ends":
            newline = draw(st.sampled_from(["\r\n", "\r"]))
            continue
        lines[i] = sep.join(cells)
    return newline.join(lines) + newline, done


@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=corrupted())
def test_corrupted_bundled_data_is_read_or_refused_by_file_and_line(tmp_path, case):
    text, done = case
    path = tmp_path / "corrupted.csv"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    try:
        ds = read_viral_loads(path)
    except ValueError as e:
        message = str(e)
        by_line = re.match(rf"{re.escape(str(path))}:\d+: \S", message)
        assert by_line or message in (f"{path}: no observation rows", f"{path}: empty file"), (done, message)
        return
    for p in ds:  # what is read holds together
        assert p.id and p.n_obs > 0 and np.all(np.diff(p.t_days) > 0) and np.all(p.t_days >= 0), (done, p.id)
        assert np.all(np.isfinite(p.log10_vl)) and np.all(p.log10_vl <= MAX_LOG10_VL), (done, p.id)
        assert np.all(p.log10_vl[p.censored] == p.lloq_log10[p.censored]), (done, p.id)
        assert all(math.isfinite(v) for v in p.covariates.values()), (done, p.id)
