// Golden signals over time with uPlot, from GET /api/v1/signals/history.
import { h } from "./dom.js";

const SERIES = [
  { title: "Requests/s", series: [{ label: "rps", key: "rps", stroke: "#1565c0" }] },
  { title: "Success rate", range: [0, 1], series: [{ label: "success", key: "success_rate", stroke: "#2e7d32" }] },
  { title: "Latency (ms)", series: [
      { label: "p50", key: "p50_ms", stroke: "#6a1b9a" },
      { label: "p99", key: "p99_ms", stroke: "#ef6c00" }] },
];

function columns(points, keys) {
  return [points.map((p) => p.t), ...keys.map((k) => points.map((p) => (p[k] === undefined ? null : p[k])))];
}

// Charts in `container`; returns `update(history)` to feed them new points.
export function signalCharts(container) {
  const plots = [];
  const width = Math.max(300, Math.floor((container.clientWidth || 1200) / SERIES.length) - 24);
  for (const chart of SERIES) {
    const box = h("div", { class: "chart", "data-chart": chart.title });
    container.append(box);
    const opts = {
      title: chart.title, width, height: 200,
      scales: chart.range ? { y: { range: chart.range } } : {},
      series: [{}, ...chart.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, spanGaps: false }))],
      axes: [{}, { size: 60 }],
    };
    const keys = chart.series.map((s) => s.key);
    plots.push({ plot: new uPlot(opts, columns([], keys), box), keys });
  }
  return (history) => {
    for (const { plot, keys } of plots) plot.setData(columns(history.points, keys));
  };
}
