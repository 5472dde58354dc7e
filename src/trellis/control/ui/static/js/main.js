// The dashboard's router: `#/...` fragments to views. Each view is
// `render(container, ...params)` and returns a function that stops its timers and
// listeners when the view is left.
import * as graph from "./graph.js";
import * as proxies from "./proxies.js";
import * as service from "./service.js";
import * as traces from "./traces.js";
import { h } from "./dom.js";

const ROUTES = [
  [/^#?\/?$/, "graph", (c) => graph.render(c)],
  [/^#\/service\/([^/]+)$/, "graph", (c, name) => service.render(c, decodeURIComponent(name))],
  [/^#\/proxies$/, "proxies", (c) => proxies.render(c)],
  [/^#\/traces$/, "traces", (c) => traces.renderSearch(c)],
  [/^#\/trace\/([0-9a-fA-F]+)$/, "traces", (c, id) => traces.renderTrace(c, id)],
];

let leave = () => {};

function route() {
  leave();
  const view = document.getElementById("view");
  view.replaceChildren();
  const hash = window.location.hash || "#/";
  for (const [pattern, nav, show] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === nav);
    leave = show(view, ...match.slice(1)) || (() => {});
    return;
  }
  view.append(h("p", { class: "error", text: `No page at ${hash}` }));
  leave = () => {};
}

document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/api/v1/session", { method: "DELETE", credentials: "same-origin" });
  window.location.assign("/ui/login");
});

window.addEventListener("hashchange", route);
route();
