// Traces: search the control plane's trace store (GET /api/v1/traces) and show one
// trace as a waterfall (GET /api/v1/traces/{id}): spans as a tree in time order, each
// bar at its offset and as long as its duration, the span with the most self time marked.
import { getJson, query } from "./api.js";
import { fmt, h, table } from "./dom.js";

function field(label, input) {
  return h("label", {}, h("span", { text: label }), input);
}

export function renderSearch(container) {
  const params = new URLSearchParams(window.location.search);
  const service = h("input", { name: "service", placeholder: "e.g. reviews", value: params.get("service") || "" });
  const status = h("select", { name: "status" },
    ["", "2xx", "4xx", "5xx", "error"].map((s) => h("option", { value: s, text: s || "any" })));
  const minDuration = h("input", { name: "minDuration", placeholder: "e.g. 100ms", size: 8 });
  const limit = h("input", { name: "limit", type: "number", value: "50", min: "1", max: "1000", size: 5 });
  const results = h("div", { id: "trace-results" });
  const form = h("form", { class: "search", id: "trace-search" },
    field("service", service), field("status", status), field("min duration", minDuration),
    field("limit", limit), h("button", { type: "submit", text: "Search" }));
  container.append(h("h1", { text: "Traces" }), form, results);

  async function search(event) {
    if (event) event.preventDefault();
    results.replaceChildren(h("p", { class: "muted", text: "searching…" }));
    try {
      const found = await getJson(`/api/v1/traces${query({
        service: service.value.trim(), status: status.value, minDuration: minDuration.value.trim(), limit: limit.value })}`);
      results.replaceChildren(
        h("p", { class: "muted", text: `${found.matched} matched, newest first (showing at most ${found.limit})` }),
        table(["start", "root", "services", "duration", "spans", "status"], found.items.map((t) => h("tr", { "data-trace": t.traceId },
          h("td", {}, h("a", { href: `#/trace/${t.traceId}`, text: new Date(t.start).toLocaleString() })),
          h("td", { text: `${t.rootService}: ${t.rootName}${t.rootMissing ? " (root not received)" : ""}` }),
          h("td", { text: t.services.join(", ") }),
          h("td", { class: "num", text: fmt.ns(t.durationNs) }),
          h("td", { class: "num", text: t.spanCount }),
          h("td", { class: t.error ? "bad" : "", text: t.statusClasses.join(" ") || "–" }))), { class: "traces" }));
    } catch (e) {
      results.replaceChildren(h("p", { class: "error", text: String(e.message || e) }));
    }
  }
  form.addEventListener("submit", search);
  search();
  return () => {};
}

function spanRow(span, extent, details) {
  const left = extent ? (100 * span.offsetNs) / extent : 0;
  const width = extent ? Math.max(0.3, (100 * span.durationNs) / extent) : 100;
  const error = span.status.code === "ERROR";
  const code = span.attributes["http.response.status_code"] ?? span.attributes["http.status_code"];
  const row = h("div", { class: `span-row${span.slowest ? " slowest" : ""}${error ? " error" : ""}`, "data-span": span.spanId },
    h("div", { class: "span-label", style: `padding-left:${8 + 14 * span.depth}px` },
      h("strong", { text: span.service }), ` ${span.name}`, code ? h("span", { class: "tag", text: String(code) }) : null,
      span.slowest ? h("span", { class: "tag warn", text: "slowest" }) : null),
    h("div", { class: "span-track" },
      h("div", { class: `span-bar ${span.kind.toLowerCase()}`, style: `left:${left}%;width:${width}%` })),
    h("div", { class: "span-time num", text: `${fmt.ns(span.durationNs)} @ +${fmt.ns(span.offsetNs)}` }));
  row.addEventListener("click", () => {
    details.replaceChildren(h("h3", { text: `${span.service}: ${span.name} (${span.kind})` }),
      h("pre", { text: JSON.stringify({ spanId: span.spanId, parentSpanId: span.parentSpanId, status: span.status,
        selfNs: span.selfNs, attributes: span.attributes, events: span.events }, null, 1) }));
  });
  return row;
}

export function renderTrace(container, traceId) {
  const body = h("div", { id: "waterfall", class: "waterfall" }, h("p", { class: "muted", text: "loading…" }));
  const details = h("div", { id: "span-details", class: "details" });
  container.append(h("p", {}, h("a", { href: "#/traces", text: "← traces" })),
    h("h1", { text: `Trace ${traceId}` }), body, details);
  getJson(`/api/v1/traces/${encodeURIComponent(traceId)}`).then((trace) => {
    const extent = trace.extentNs || trace.durationNs;
    body.replaceChildren(
      h("p", { class: "muted", text: `${trace.spanCount} spans across ${trace.services.join(", ")} · ` +
        `${fmt.ns(extent)} · started ${new Date(trace.start).toLocaleString()}` }),
      h("div", { class: "span-row head" }, h("div", { class: "span-label", text: "service: span" }),
        h("div", { class: "span-track", text: `0 … ${fmt.ns(extent)}` }), h("div", { class: "span-time", text: "duration @ offset" })),
      ...trace.spans.map((s) => spanRow(s, extent, details)));
    body.dataset.spans = String(trace.spans.length);
  }).catch((e) => body.replaceChildren(h("p", { class: "error", text: String(e.message || e) })));
  return () => {};
}
