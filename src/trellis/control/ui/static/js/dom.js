// Building DOM from data without innerHTML (names come from the mesh, not from us),
// and the number formats every page shares.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "style") el.style.cssText = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function table(headings, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", { text: t })))),
    h("tbody", {}, rows));
}

export const fmt = {
  rps: (v) => (v === null || v === undefined ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(1)),
  pct: (v) => (v === null || v === undefined ? "–" : `${Number((100 * v).toFixed(1))}%`),
  ms: (v) => (v === null || v === undefined ? "–" : v >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(1)} ms`),
  ns: (ns) => {
    if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)} s`;
    if (ns >= 1e6) return `${(ns / 1e6).toFixed(1)} ms`;
    return `${(ns / 1e3).toFixed(0)} µs`;
  },
  time: (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–"),
  until: (iso) => {
    if (!iso) return "–";
    const s = (new Date(iso).getTime() - Date.now()) / 1000;
    if (s < 0) return "expired";
    if (s < 90) return `in ${Math.round(s)} s`;
    if (s < 3600) return `in ${Math.round(s / 60)} min`;
    if (s < 86400 * 2) return `in ${(s / 3600).toFixed(1)} h`;
    return `in ${Math.round(s / 86400)} days`;
  },
};

// Success-rate health class: the same thresholds on the graph and in tables.
export function health(successRate) {
  if (successRate === null || successRate === undefined) return "idle";
  if (successRate >= 0.99) return "good";
  if (successRate >= 0.95) return "warn";
  return "bad";
}

// "reviews.default" -> ["reviews", "default"]
export function splitService(canonical) {
  const at = canonical.lastIndexOf(".");
  return at < 0 ? [canonical, "default"] : [canonical.slice(0, at), canonical.slice(at + 1)];
}
