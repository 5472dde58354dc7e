"""Traces as text for `trellis traces` and `trellis trace`: durations, summary rows, the waterfall.

Works on the API's JSON (docs/design/control-plane.md, "Traces"): the waterfall's
tree, offsets, self times and slowest span are computed by the control plane
(trellis.control.traces.waterfall); here they are only drawn. Pure: dicts in, strings
out, so the drawing is tested without a terminal.
"""

from __future__ import annotations

from typing import Any

BAR_WIDTH = 40
SLOWEST_MARK = "◀ slowest"
_HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")


def duration_text(ns: int | float) -> str:
    """`850ns`, `12.5µs`, `3.27ms`, `1.50s`, `2m05s`: three significant digits or so."""
    ns = int(ns)
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g}ms" if ns < 100_000_000 else f"{ns / 1e6:.0f}ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def offset_text(ns: int | float) -> str:
    """Offsets line up in a column: milliseconds with three decimals."""
    return f"{ns / 1e6:.3f}ms"


def start_text(rfc3339: str) -> str:
    """`2026-12-06T20:18:51.089798Z` -> `2026-12-06 20:18:51.089Z` (UTC, to the millisecond)."""
    date, _, time = rfc3339.partition("T")
    return f"{date} {time[:12]}Z" if time else rfc3339


def summary_row(item: dict[str, Any]) -> list[str]:
    """TRACE ID, ROOT, START, DURATION, SPANS, SERVICES, STATUS of one search result."""
    root = f"{item['rootService']}: {item['rootName']}"
    if item.get("rootMissing"):
        root += " (root not received)"
    return [
        item["traceId"],
        root,
        start_text(item["start"]),
        duration_text(item["durationNs"]),
        str(item["spanCount"]),
        ",".join(item["services"]),
        ",".join(item["statusClasses"]) or "-",
    ]


SUMMARY_HEADERS = ("TRACE ID", "ROOT", "START", "DURATION", "SPANS", "SERVICES", "STATUS")


def bar(offset: int, duration: int, extent: int, width: int = BAR_WIDTH) -> str:
    """The span's place on the trace's timeline, `width` cells between `|`s (at least one
    cell, so that a span too short to show still shows)."""
    if extent <= 0:
        first, last = 0, width
    else:
        first = min(width - 1, offset * width // extent)
        last = max(first + 1, min(width, -(-(offset + duration) * width // extent)))
    return "|" + " " * first + "█" * (last - first) + " " * (width - last) + "|"


def span_status(span: dict[str, Any]) -> str:
    """The HTTP status the span records, and ERROR when its status says so: `503 ERROR`."""
    attributes = span.get("attributes", {})
    http = next((str(attributes[k]) for k in _HTTP_STATUS_KEYS if k in attributes), "")
    error = span.get("status", {}).get("code") == "ERROR"
    return " ".join(x for x in (http, "ERROR" if error else "") if x) or "-"


def span_label(span: dict[str, Any]) -> str:
    """The span's name in the tree: indented by depth, with its kind; an orphan says why."""
    indent = "  " * span["depth"] + ("└ " if span["depth"] else "")
    label = f"{indent}{span['name']} [{span['kind'].lower()}]"
    if span.get("orphan"):
        parent = span.get("parentSpanId") or "?"
        label += f" (orphan: parent {parent} not received)"
    return label


WATERFALL_HEADERS = ("OFFSET", "DURATION", "SELF", "SERVICE", "SPAN", "STATUS", "TIMELINE", "")


def waterfall_rows(trace: dict[str, Any], width: int = BAR_WIDTH) -> list[list[str]]:
    """One row per span in the API's order (the tree, depth first), cells as in
    WATERFALL_HEADERS; the slowest span (largest self time) marked in the last one."""
    extent = trace["extentNs"]
    return [
        [
            offset_text(span["offsetNs"]),
            duration_text(span["durationNs"]),
            duration_text(span["selfNs"]),
            span["service"],
            span_label(span),
            span_status(span),
            bar(span["offsetNs"], span["durationNs"], extent, width),
            SLOWEST_MARK if span.get("slowest") else "",
        ]
        for span in trace["spans"]
    ]


def trace_heading(trace: dict[str, Any]) -> str:
    root = f"{trace['rootService']}: {trace['rootName']}"
    if trace.get("rootMissing"):
        root += " (root not received)"
    services = len(trace["services"])
    return (
        f"trace {trace['traceId']}  {root}  {duration_text(trace['durationNs'])}, "
        f"{trace['spanCount']} spans, {services} service{'s' if services != 1 else ''}, "
        f"started {start_text(trace['start'])}" + ("  ERROR" if trace.get("error") else "")
    )


def slowest_line(trace: dict[str, Any]) -> str | None:
    """`slowest: reviews GET /reviews, 20.1ms of its own (79% of the trace)`."""
    slowest = next((s for s in trace["spans"] if s.get("slowest")), None)
    if slowest is None:
        return None
    extent = trace["extentNs"] or 1
    share = 100 * slowest["selfNs"] / extent
    return (
        f"slowest span: {slowest['service']} {slowest['name']} ({slowest['spanId']}), "
        f"{duration_text(slowest['selfNs'])} of its own, {share:.0f}% of the trace"
    )
