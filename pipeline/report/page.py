"""The status page the job serves at `/` on its metrics port: what `status` says, for a
person, refreshed by itself. A pure function of the figures, so every value is escaped in
one place and the page can be checked without a server."""

from __future__ import annotations

from html import escape

REFRESH_S = 10

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 68rem;
       padding: 0 1rem; color: #1d2733; }
h1 { font-size: 1.4rem; margin: 0 0 .8rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; }
.health { padding: .7rem 1rem; border-radius: .4rem; font-weight: 600; }
.healthy { background: #e3f4e6; color: #17612a; }
.unhealthy { background: #fbe4e4; color: #8c1c1c; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr));
           gap: .6rem; margin: 1rem 0; }
.figure { background: #f3f5f8; border-radius: .4rem; padding: .6rem .8rem; }
.figure span { display: block; font-size: .8rem; color: #5b6675; }
.figure b { font-size: 1.3rem; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e1e5ea; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: .85rem; word-break: break-all; }
footer { margin-top: 2rem; font-size: .8rem; color: #5b6675; }
"""


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _figure(key: str, label: str, value: object) -> str:
    shown = "-" if value is None else value
    return (f'<div class="figure"><span>{escape(label)}</span>'
            f'<b data-figure="{escape(key)}">{escape(str(shown))}</b></div>')


def _table(headers: tuple[str, ...], rows: list[tuple], numeric: set[int]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{escape(str(v))}</td>'
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_page(status, examples: dict[str, list[tuple]], generated_at: str) -> str:
    """The page for a `Status` (pipeline.report.status) and a few rejected lines per reason
    ({reason: [(file, line number, detail, raw line)]})."""
    health = ("healthy", "pipeline healthy") if status.healthy else \
        ("unhealthy", "UNHEALTHY: " + "; ".join(status.problems))
    figures = "".join((
        _figure("events_total", "events stored", status.events_total),
        _figure("rows_read_total", "rows read", status.rows_read_total),
        _figure("rows_rejected_total", "rows rejected", status.rows_rejected_total),
        _figure("rows_duplicate_total", "duplicates", status.rows_duplicate_total),
        _figure("batches_total", "batches committed", status.batches_total),
        _figure("backlog_files", "files waiting", status.backlog_files),
        _figure("oldest_waiting_file_age_s", "oldest waiting",
                _seconds(status.oldest_waiting_file_age_s)),
        _figure("latency_p50_s", "latency p50", _seconds(status.latency_p50_s)),
        _figure("latency_p99_s", "latency p99", _seconds(status.latency_p99_s)),
        _figure("throughput_rows_per_s", "rows / s", status.throughput_rows_per_s),
        _figure("last_commit_at", "last commit (UTC)", status.last_commit_at),
    ))
    batches = _table(
        ("batch", "committed (UTC)", "files", "read", "written", "rejected", "duplicate",
         "latency"),
        [(b["batch_id"], b["committed_at"], b["files"], b["rows_read"], b["rows_written"],
          b["rows_rejected"], b["rows_duplicate"], _seconds(b["latency_s"]))
         for b in status.recent_batches[:10]], numeric={0, 2, 3, 4, 5, 6, 7})
    reasons = _table(("reason", "rows"), sorted(status.rejected_by_reason.items(),
                                                key=lambda item: (-item[1], item[0])),
                     numeric={1})
    samples = "".join(
        f"<h3>{escape(reason)}</h3>" + _table(
            ("file", "line", "detail", "as read"),
            [(name, "file" if line is None else line, detail or "", raw or "")
             for name, line, detail, raw in rows], numeric={1})
        for reason, rows in sorted(examples.items()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_S}">
<title>events pipeline: {escape(health[1])}</title><style>{STYLE}</style></head>
<body><h1>events pipeline</h1>
<div class="health {health[0]}" data-figure="health">{escape(health[1])}</div>
<div class="figures">{figures}</div>
<h2>Last batches</h2>{batches}
<h2>Rejected rows by reason</h2>{reasons}
<h2>Examples of rejected rows</h2>{samples or "<p>none</p>"}
<footer>From the database at {escape(generated_at)}; this page reloads every {REFRESH_S}
seconds. The same figures: <code>python -m pipeline.ops.status</code>.</footer>
</body></html>
"""
