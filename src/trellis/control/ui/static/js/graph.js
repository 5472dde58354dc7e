// The service graph: services as nodes, calls as edges, from the golden signals
// (GET /api/v1/signals, then the event stream). Edge labels: rps · success · p99,
// and whether the edge is mTLS (solid line; plaintext is dashed). Node colour
// is its success rate. The layout runs again only when the set of nodes or edges changes.
import { getJson, onSignals } from "./api.js";
import { fmt, h, health, table } from "./dom.js";

const COLOURS = { good: "#2e7d32", warn: "#f9a825", bad: "#c62828", idle: "#90a4ae" };

const STYLE = [
  { selector: "node", style: {
      label: "data(label)", "text-wrap": "wrap", "text-valign": "bottom", "text-margin-y": 6,
      "font-size": 11, "background-color": "data(colour)", width: 34, height: 34 } },
  { selector: "edge", style: {
      label: "data(label)", "font-size": 9, "curve-style": "bezier", "target-arrow-shape": "triangle",
      "text-rotation": "autorotate", "text-margin-y": -9,
      width: "data(width)", "line-color": "data(colour)", "target-arrow-color": "data(colour)",
      "text-background-color": "#fff", "text-background-opacity": 0.85, "text-background-padding": 2 } },
  { selector: "edge[!mtls]", style: { "line-style": "dashed" } },
];

function elementsOf(signals) {
  const byService = new Map(signals.services.map((s) => [s.service, s]));
  const names = new Set(byService.keys());
  for (const e of signals.edges) { names.add(e.source); names.add(e.destination); }
  const nodes = [...names].sort().map((name) => {
    const s = byService.get(name);
    const label = s ? `${name}\n${fmt.rps(s.rps)} rps · ${fmt.pct(s.success_rate)}` : name;
    return { group: "nodes", data: { id: name, label, colour: COLOURS[health(s ? s.success_rate : null)] } };
  });
  const edges = signals.edges.map((e) => ({
    group: "edges",
    data: {
      id: `${e.source}->${e.destination}`, source: e.source, target: e.destination, mtls: e.mtls,
      label: `${fmt.rps(e.rps)} rps · ${fmt.pct(e.success_rate)} · p99 ${fmt.ms(e.p99_ms)}${e.mtls ? " · mTLS" : " · plaintext"}`,
      colour: COLOURS[health(e.success_rate)],
      width: Math.min(8, 1.5 + Math.log2(1 + e.rps)),
    },
  }));
  return { nodes, edges };
}

function serviceRows(signals) {
  return signals.services.map((s) => h("tr", { "data-service": s.service },
    h("td", {}, h("a", { href: `#/service/${encodeURIComponent(s.service)}`, text: s.service })),
    h("td", { class: "num", text: fmt.rps(s.rps) }),
    h("td", { class: `num ${health(s.success_rate)}`, text: fmt.pct(s.success_rate) }),
    h("td", { class: "num", text: fmt.ms(s.p50_ms) }),
    h("td", { class: "num", text: fmt.ms(s.p99_ms) }),
    h("td", { class: "num", text: s.requests }),
    h("td", { class: s.errors ? "num bad" : "num", text: s.errors }),
    h("td", { class: s.denied ? "num bad" : "num", text: s.denied })));
}

function edgeRows(signals) {
  return signals.edges.map((e) => h("tr", { "data-edge": `${e.source}->${e.destination}` },
    h("td", {}, h("a", { href: `#/service/${encodeURIComponent(e.source)}`, text: e.source })),
    h("td", {}, h("a", { href: `#/service/${encodeURIComponent(e.destination)}`, text: e.destination })),
    h("td", { class: "num", text: fmt.rps(e.rps) }),
    h("td", { class: `num ${health(e.success_rate)}`, text: fmt.pct(e.success_rate) }),
    h("td", { class: "num", text: fmt.ms(e.p50_ms) }),
    h("td", { class: "num", text: fmt.ms(e.p99_ms) }),
    h("td", { class: e.mtls ? "good" : "warn", text: e.mtls ? "mTLS" : "plaintext" })));
}

export function render(container) {
  const status = h("p", { id: "graph-status", class: "muted", text: "waiting for the first signals…" });
  const canvas = h("div", { id: "graph", class: "graph" });
  const edges = h("div", { id: "edges" });
  const services = h("div", { id: "services" });
  container.append(h("h1", { text: "Service graph" }), status, canvas,
    h("h2", { text: "Edges (last 60 s)" }), edges, h("h2", { text: "Services (last 60 s)" }), services);

  const cy = cytoscape({ container: canvas, style: STYLE, elements: [] });
  const open = (name) => { window.location.hash = `#/service/${encodeURIComponent(name)}`; };
  cy.on("tap", "node", (event) => open(event.target.id()));
  cy.on("tap", "edge", (event) => open(event.target.data("target")));
  let shape = "";

  function update(signals) {
    const { nodes, edges: links } = elementsOf(signals);
    const newShape = [...nodes.map((n) => n.data.id), ...links.map((e) => e.data.id)].join("|");
    cy.batch(() => {
      if (newShape !== shape) {
        cy.elements().remove();
        cy.add([...nodes, ...links]);
      } else {
        for (const el of [...nodes, ...links]) cy.getElementById(el.data.id).data(el.data);
      }
    });
    if (newShape !== shape) {
      shape = newShape;
      cy.layout({ name: "breadthfirst", directed: true, spacingFactor: 1.6, padding: 40,
        roots: cy.nodes().filter((n) => n.indegree(false) === 0) }).run();
    }
    canvas.dataset.nodes = String(nodes.length);
    canvas.dataset.edges = String(links.length);
    status.textContent = `${signals.services.length} services, ${signals.edges.length} edges, ` +
      `${signals.proxies_reporting} proxies reporting · generated ${fmt.time(signals.generated_at)}`;
    edges.replaceChildren(table(["source", "destination", "rps", "success", "p50", "p99", "security"],
      edgeRows(signals), { class: "edges" }));
    services.replaceChildren(table(["service", "rps", "success", "p50", "p99", "requests", "5xx", "denied"],
      serviceRows(signals), { class: "services" }));
  }

  let stopped = false;
  getJson("/api/v1/signals?window=60").then((s) => { if (!stopped) update(s); }).catch((e) => {
    status.textContent = String(e.message || e);
  });
  const unsubscribe = onSignals((s) => { if (!stopped) update(s); });
  return () => { stopped = true; unsubscribe(); cy.destroy(); };
}
