// One service: its golden signals now (stream) and over 15 minutes (history, uPlot),
// its callers and callees, routes and weighted splits, endpoints and their health,
// the authorization policies that select its workloads, and its recent denials.
import { getJson, onSignals, query } from "./api.js";
import { signalCharts } from "./charts.js";
import { openTap } from "./tap.js";
import { fmt, h, health, splitService, table } from "./dom.js";

const HISTORY_MINUTES = 15;
const HISTORY_REFRESH_MS = 10000;
const LIVE_4XX_KEPT = 20;
const TAP_SECONDS = 900;

function section(title, id) {
  const body = h("div", { id });
  return [h("section", {}, h("h2", { text: title }), body), body];
}

function short(value) {
  return value === undefined || value === null ? "" : JSON.stringify(value);
}

const OPS = { Exact: "=", PathPrefix: " starts ", RegularExpression: " ~ " };

// One match as people write it: `path starts /api, GET, header x-canary = yes`.
function matchText(m) {
  const parts = [];
  if (m.path) parts.push(`path${OPS[m.path.type] || " "}${m.path.value}`);
  if (typeof m.method === "string") parts.push(m.method);
  else if (m.method) parts.push(`gRPC ${m.method.service || "*"}/${m.method.method || "*"}`);
  for (const x of m.headers || []) parts.push(`header ${x.name}${OPS[x.type] || " "}${x.value}`);
  for (const x of m.queryParams || []) parts.push(`query ${x.name}${OPS[x.type] || " "}${x.value}`);
  return parts.join(", ");
}

function matchesText(matches) {
  const texts = (matches || []).map(matchText).filter((t) => t);
  return texts.length ? `when ${texts.join(" or ")}` : "every request";
}

function retryText(retry) {
  const on = retry.codes && retry.codes.length ? ` on ${retry.codes.join(", ")}` : "";
  return `retry ${retry.attempts ?? "?"}×${on}${retry.perTryTimeout ? `, ${short(retry.perTryTimeout)} per try` : ""}`;
}

function backendsOf(rule) {
  const refs = rule.backendRefs || [];
  const total = refs.reduce((sum, b) => sum + (b.weight ?? 1), 0) || 1;
  return refs.map((b) => {
    const share = (b.weight ?? 1) / total;
    return h("div", { class: "split" },
      h("span", { class: "split-name", text: `${b.name}:${b.port ?? ""}` }),
      h("span", { class: "split-bar" }, h("span", { style: `width:${(100 * share).toFixed(1)}%` })),
      h("span", { class: "num", text: `${b.weight ?? 1} (${fmt.pct(share)})` }));
  });
}

function routesView(routes) {
  if (!routes.length) return h("p", { class: "muted", text: "No routes: requests go to the service's own endpoints." });
  return routes.map((r) => h("div", { class: "route" },
    h("h3", { text: `${r.kind} ${r.metadata.namespace || "default"}/${r.metadata.name}` }),
    (r.spec.rules || []).map((rule, i) => h("div", { class: "rule" },
      h("div", { class: "muted", text: `rule ${i + 1}: ${matchesText(rule.matches)}` +
        `${rule.timeout ? ` · timeout ${short(rule.timeout)}` : ""}${rule.retry ? ` · ${retryText(rule.retry)}` : ""}` }),
      backendsOf(rule)))));
}

function endpointsView(endpoints) {
  if (!endpoints.length) return h("p", { class: "muted", text: "No endpoints." });
  return table(["workload", "address", "service port", "health", "lease"], endpoints.map((e) => h("tr", {},
    h("td", { text: e.workload }),
    h("td", { text: `${e.address}:${e.port}` }),
    h("td", { class: "num", text: e.servicePort }),
    h("td", { class: e.healthy ? "good" : "bad", text: e.healthy ? "healthy" : "unhealthy" }),
    h("td", { text: e.static ? "static" : `expires ${fmt.until(e.expiresAt ? new Date(e.expiresAt * 1000).toISOString() : null)}` }))));
}

// A policy applies to the service's workloads when it has no selector (namespace-wide)
// or when every label it selects on is one the service selects on too.
function applies(policy, serviceSelector) {
  const selector = policy.spec.selector;
  if (!selector) return true;
  const wanted = selector.matchLabels || {};
  return Object.entries(wanted).every(([k, v]) => serviceSelector[k] === v);
}

// A rule without its empty lists: what it says, not the schema's every field.
function prune(value) {
  if (Array.isArray(value)) return value.map(prune);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      const kept = prune(v);
      const empty = kept === null || kept === false || (Array.isArray(kept) && !kept.length) ||
        (typeof kept === "object" && kept !== null && !Array.isArray(kept) && !Object.keys(kept).length);
      if (!empty) out[k] = kept;
    }
    return out;
  }
  return value;
}

function policiesView(policies) {
  if (!policies.length) return h("p", { class: "muted", text: "No authorization policy selects this service's workloads: every caller is allowed." });
  return policies.map((p) => h("div", { class: "policy" },
    h("h3", {}, h("span", { class: `tag ${p.spec.action === "DENY" ? "bad" : "good"}`, text: p.spec.action || "ALLOW" }),
      ` ${p.metadata.namespace || "default"}/${p.metadata.name}${p.spec.dryRun ? " (dry run)" : ""}`),
    (p.spec.rules || []).length
      ? (p.spec.rules || []).map((rule, i) => h("pre", { text: `rule ${i + 1}: ${JSON.stringify(prune(rule))}` }))
      : h("p", { class: "muted", text: "no rules" })));
}

// 4xx answers to this service as they happen (tap), newest first; 403s are denials.
function liveView(events, note) {
  const parts = [h("p", { class: "muted", text: `Live 4xx answers since this page opened (tap): ${note}` })];
  if (events.length) {
    parts.push(table(["time", "source → destination", "request", "status", "flags", "seen by"], events.map((e) =>
      h("tr", { "data-tap-status": String(e.status) },
        h("td", { text: fmt.time(e.time) }),
        h("td", { text: `${e.source} → ${e.destination}` }),
        h("td", { text: `${e.method} ${e.authority}${e.path}` }),
        h("td", { class: e.status === 403 ? "bad" : "warn", text: e.status === 403 ? "403 denied" : String(e.status) }),
        h("td", { text: e.flags }),
        h("td", { text: `${e.direction} ${e.proxy}` })))));
  }
  return parts;
}

function denialsView(signal, traces) {
  const parts = [h("p", {}, `Denied by authorization in the last 60 s: `,
    h("strong", { "data-denied": "", text: signal ? String(signal.denied ?? 0) : "–" }))];
  if (traces.length) {
    parts.push(h("p", { class: "muted", text: "Recent sampled traces with a 4xx answer:" }),
      table(["start", "root", "duration", "status"], traces.map((t) => h("tr", {},
        h("td", {}, h("a", { href: `#/trace/${t.traceId}`, text: fmt.time(t.start) })),
        h("td", { text: `${t.rootService}: ${t.rootName}` }),
        h("td", { class: "num", text: fmt.ns(t.durationNs) }),
        h("td", { text: t.statusClasses.join(" ") })))));
  } else {
    parts.push(h("p", { class: "muted", text: "No sampled trace with a 4xx answer." }));
  }
  return parts;
}

function edgeTable(edges, side) {
  if (!edges.length) return h("p", { class: "muted", text: "None in the last 60 s." });
  return table([side, "rps", "success", "p99", "security"], edges.map((e) => {
    const other = side === "caller" ? e.source : e.destination;
    return h("tr", {},
      h("td", {}, h("a", { href: `#/service/${encodeURIComponent(other)}`, text: other })),
      h("td", { class: "num", text: fmt.rps(e.rps) }),
      h("td", { class: `num ${health(e.success_rate)}`, text: fmt.pct(e.success_rate) }),
      h("td", { class: "num", text: fmt.ms(e.p99_ms) }),
      h("td", { class: e.mtls ? "good" : "warn", text: e.mtls ? "mTLS" : "plaintext" }));
  }));
}

export function render(container, canonical) {
  const [name, namespace] = splitService(canonical);
  const now = h("p", { id: "now", class: "figures", text: "waiting for signals…" });
  const charts = h("div", { class: "charts", id: "charts" });
  const [callersSection, callers] = section("Callers", "callers");
  const [calleesSection, callees] = section("Calls to", "callees");
  const [routesSection, routes] = section("Routes and splits", "routes");
  const [endpointsSection, endpoints] = section("Endpoints", "endpoints");
  const [policiesSection, policies] = section("Authorization policies", "policies");
  const [denialsSection, denials] = section("Recent denials", "denials");
  const live4xx = h("div", { id: "live-4xx" });
  denialsSection.append(live4xx);
  container.append(h("h1", { text: canonical }), now, charts,
    h("div", { class: "columns" }, callersSection, calleesSection),
    routesSection, endpointsSection, policiesSection, denialsSection);

  const updateCharts = signalCharts(charts);
  let stopped = false;
  let signal = null;
  let recent4xx = [];

  async function loadHistory() {
    try {
      const history = await getJson(`/api/v1/signals/history${query({ service: canonical, minutes: HISTORY_MINUTES })}`);
      if (!stopped) { updateCharts(history); charts.dataset.points = String(history.points.length); }
    } catch (e) { if (!stopped) charts.dataset.error = String(e.message || e); }
  }

  async function loadConfig() {
    try {
      const described = await getJson(`/api/v1/describe/services/${encodeURIComponent(name)}${query({ namespace })}`);
      routes.replaceChildren(...[routesView(described.routes)].flat());
      endpoints.replaceChildren(endpointsView(described.endpoints));
      const all = await getJson(`/api/v1/authorizationpolicies${query({ namespace })}`);
      const selector = described.service.spec.selector || {};
      policies.replaceChildren(...[policiesView(all.items.filter((p) => applies(p, selector)))].flat());
    } catch (e) {
      routes.replaceChildren(h("p", { class: "muted", text: `Not a Service of the mesh's config (${e.message || e}).` }));
    }
    try {
      const found = await getJson(`/api/v1/traces${query({ service: name, status: "4xx", limit: 10 })}`);
      recent4xx = found.items;
    } catch (_) { recent4xx = []; }
    denials.replaceChildren(...denialsView(signal, recent4xx));
  }

  const unsubscribe = onSignals((s) => {
    if (stopped) return;
    signal = s.services.find((x) => x.service === canonical) || null;
    now.textContent = signal
      ? `${fmt.rps(signal.rps)} rps · success ${fmt.pct(signal.success_rate)} · p50 ${fmt.ms(signal.p50_ms)} · ` +
        `p99 ${fmt.ms(signal.p99_ms)} · ${signal.errors} errors · ${signal.denied} denied (last ${s.window_seconds} s)`
      : "No traffic in the last minute.";
    callers.replaceChildren(edgeTable(s.edges.filter((e) => e.destination === canonical), "caller"));
    callees.replaceChildren(edgeTable(s.edges.filter((e) => e.source === canonical), "callee"));
    denials.replaceChildren(...denialsView(signal, recent4xx));
  });
  const seen = [];
  let tapNote = "watching…";
  const showLive = () => live4xx.replaceChildren(...liveView(seen, tapNote));
  const closeTap = openTap({ service: canonical, status: "4xx", duration: TAP_SECONDS }, (event) => {
    seen.unshift(event);
    seen.length = Math.min(seen.length, LIVE_4XX_KEPT);
    showLive();
  }, (reason) => { tapNote = reason; showLive(); });
  showLive();
  loadHistory();
  loadConfig();
  const timer = setInterval(() => { loadHistory(); }, HISTORY_REFRESH_MS);
  return () => { stopped = true; clearInterval(timer); unsubscribe(); closeTap(); };
}
