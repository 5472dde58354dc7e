// The API as the dashboard reads it: same-origin GETs that carry the session cookie,
// and the golden-signals event stream. A 401 means the session is gone: back to login.

export class Refused extends Error {}

export async function getJson(path) {
  const answer = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (answer.status === 401) {
    window.location.assign("/ui/login");
    throw new Refused("not logged in");
  }
  if (!answer.ok) {
    let reason = `HTTP ${answer.status}`;
    try { reason = (await answer.json()).error || reason; } catch (_) { /* not JSON */ }
    throw new Error(`${path}: ${reason}`);
  }
  return answer.json();
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

// One shared EventSource on /api/v1/signals/stream; every page subscribes to it.
// The browser reconnects by itself; the header's badge says whether data flows.
const listeners = new Set();
let source = null;
let latest = null;

function badge(text, cls) {
  const el = document.getElementById("live");
  if (el) { el.textContent = text; el.className = `live ${cls}`; }
}

const RETRY_MS = 5000;

// The browser retries a dropped stream by itself, but gives up on an answer that is
// not 200 (a 401 once the session is gone, a 503): then a plain GET says which (a 401
// sends the page to the login) and the stream is opened again a little later.
function connect() {
  source = new EventSource("/api/v1/signals/stream?window=60");
  source.addEventListener("signals", (event) => {
    latest = JSON.parse(event.data);
    badge(`live · ${latest.proxies_reporting} proxies · ${new Date().toLocaleTimeString()}`, "on");
    for (const l of listeners) l(latest);
  });
  source.addEventListener("error", () => {
    badge("reconnecting…", "off");
    if (source.readyState !== EventSource.CLOSED) return;
    source = null;
    getJson("/api/v1/signals?window=10").catch(() => {});
    setTimeout(() => { if (!source) connect(); }, RETRY_MS);
  });
}

export function onSignals(callback) {
  listeners.add(callback);
  if (latest) callback(latest);
  if (!source) connect();
  return () => listeners.delete(callback);
}

export function latestSignals() {
  return latest;
}
