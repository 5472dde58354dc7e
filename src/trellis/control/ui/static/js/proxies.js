// Proxies: every node connected to the ADS server (GET /api/v1/status), with the
// config version each xDS type was sent and ACKed at, NACKs and their error, and
// the node's mesh certificate and when it expires. Refreshed every few seconds.
import { getJson } from "./api.js";
import { fmt, h, table } from "./dom.js";

const REFRESH_MS = 3000;
const TYPES = ["LDS", "RDS", "CDS", "EDS", "SDS"];

function typeCell(t) {
  if (!t) return h("td", { class: "muted", text: "–" });
  if (t.nacked) return h("td", { class: "bad", title: t.error || "", text: `NACK ${t.sentVersion || ""}: ${t.error || ""}` });
  if (t.acked) return h("td", { class: "good", text: `ACK ${t.ackedVersion}` });
  return h("td", { class: "warn", text: t.sentVersion ? `sent ${t.sentVersion}` : "requested" });
}

function certificateCell(c) {
  if (!c) return h("td", { class: "muted", text: "none" });
  const soon = new Date(c.notAfter).getTime() - Date.now() < 3600 * 1000;
  return h("td", { class: soon ? "warn" : "", title: `serial ${c.serial}, not after ${c.notAfter}` },
    `expires ${fmt.until(c.notAfter)}`, h("div", { class: "fine", text: c.spiffeId }));
}

function rows(nodes) {
  const types = [...new Set([...TYPES, ...nodes.flatMap((n) => Object.keys(n.types))])]
    .filter((t) => nodes.some((n) => n.types[t]));
  const headings = ["node", "kind", "workload", "peer", "connected", ...types, "certificate"];
  const body = nodes.map((n) => h("tr", { "data-node": n.id },
    h("td", { text: n.id }),
    h("td", { text: n.kind }),
    h("td", { text: n.workload ? `${n.namespace}/${n.workload}` : "–" }),
    h("td", { text: n.peer }),
    h("td", { text: fmt.time(n.connectedAt) }),
    types.map((t) => typeCell(n.types[t])),
    certificateCell(n.certificate)));
  return table(headings, body, { class: "proxies" });
}

export function render(container) {
  const summary = h("p", { class: "muted", text: "loading…" });
  const list = h("div", { id: "proxies" });
  container.append(h("h1", { text: "Proxies" }), summary, list);
  let stopped = false;

  async function load() {
    try {
      const status = await getJson("/api/v1/status");
      if (stopped) return;
      const nacks = status.nodes.filter((n) => Object.values(n.types).some((t) => t.nacked)).length;
      summary.textContent = `${status.nodes.length} connected · ${nacks} with a NACK · store revision ${status.revision}` +
        ` · ${new Date().toLocaleTimeString()}`;
      list.replaceChildren(rows(status.nodes));
    } catch (e) { if (!stopped) summary.textContent = String(e.message || e); }
  }
  load();
  const timer = setInterval(load, REFRESH_MS);
  return () => { stopped = true; clearInterval(timer); };
}
