// A live tap (GET /api/v1/tap, NDJSON) read with fetch's stream: one callback per
// request event. The caller aborts it when its view is left (the control plane then
// stops the proxies' taps). Taps are bounded on the server (at most 16 at once).

export function openTap(params, onEvent, onEnd) {
  const controller = new AbortController();
  const q = new URLSearchParams(params).toString();
  (async () => {
    const answer = await fetch(`/api/v1/tap?${q}`, { credentials: "same-origin", signal: controller.signal });
    if (!answer.ok) {
      let reason = `HTTP ${answer.status}`;
      try { reason = (await answer.json()).error || reason; } catch (_) { /* not JSON */ }
      onEnd(reason);
      return;
    }
    const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!line) continue;
        const item = JSON.parse(line);
        if (item.type === "event") onEvent(item);
        else if (item.type === "end") onEnd(`tap ended (${item.reason})`);
      }
    }
  })().catch((e) => { if (e.name !== "AbortError") onEnd(String(e.message || e)); });
  return () => controller.abort();
}
