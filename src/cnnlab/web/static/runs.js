// The runs page: every run folder under the roots, sortable (the column headers are buttons), refreshed every
// 5 s without losing the keyboard focus, with an overlay of the selected runs' curves.
"use strict";

const COLUMNS = [
  ["name", "run"], ["status", "status"], ["model", "model"], ["dataset", "dataset"], ["recipe", "recipe"],
  ["final_test_acc", "final test acc", fmt.pct], ["best_test_acc", "best test acc", fmt.pct],
  ["epochs", "epochs", (v, r) => `${v}/${r.epochs_planned ?? "?"}`], ["seconds", "time", fmt.secs],
  ["params", "parameters", fmt.num],
];
let runs = [], sortKey = "name", sortDir = 1, lastListing = "";
const selected = new Set();
const overlayCharts = {};

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;  // empty cells last, whichever the direction
  if (b === null || b === undefined) return -1;
  return (typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))) * sortDir;
}

function sortBy(key) {
  sortDir = key === sortKey ? -sortDir : 1;
  sortKey = key;
  render();
}

function render() {
  // Rebuilt on every change; the control that had the focus gets it back (a keyboard user keeps their place).
  const had = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focusKey : null;
  const table = document.getElementById("runs-table");
  const head = el("tr", {}, el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "select for the overlay")),
    COLUMNS.map(([key, label]) => el("th", {
      scope: "col", class: "sortable" + (key === sortKey ? (sortDir > 0 ? " sorted-asc" : " sorted-desc") : ""), "data-key": key,
      "aria-sort": key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : null,
    }, el("button", { type: "button", class: "sort", "data-focus-key": `sort:${key}`, onclick: () => sortBy(key) }, label))));
  table.tHead.replaceChildren(head);
  const rows = [...runs].sort((a, b) => compareValues(a[sortKey], b[sortKey]));
  table.tBodies[0].replaceChildren(...rows.map((run) => el("tr", { class: "run-row", "data-id": run.id },
    el("td", {}, el("input", { type: "checkbox", "aria-label": `select ${run.name} for the overlay`, "data-focus-key": `select:${run.id}`,
      ...(selected.has(run.id) ? { checked: "" } : {}),
      onchange: (e) => { e.target.checked ? selected.add(run.id) : selected.delete(run.id); updateButton(); } })),
    COLUMNS.map(([key, , show]) => {
      const value = run[key];
      if (key === "name") return el("th", { scope: "row", class: "name" }, el("a", { href: runUrl("/run", run.id), "data-focus-key": `open:${run.id}` }, value));
      if (key === "status") return el("td", { class: "status " + statusClass(value) }, value);
      return el("td", { class: typeof value === "number" ? "num" : "" }, show ? show(value, run) : value ?? "");
    }))));
  if (had) {
    const again = [...document.querySelectorAll("[data-focus-key]")].find((n) => n.dataset.focusKey === had);
    if (again && again !== document.activeElement) again.focus();
  }
}

function updateButton() { document.getElementById("compare").disabled = selected.size === 0; }

function overlayBox(id, title) {
  const chart = el("div", { id, class: "chart" });
  return [el("figure", { class: "chart-box" }, el("figcaption", {}, title), chart, el("p", { class: "note chart-summary", id: `${id}-summary` })), chart];
}

async function overlay() {
  const where = document.getElementById("overlay");
  try {
    const asked = runs.filter((r) => selected.has(r.id));
    const answers = await Promise.allSettled(asked.map((r) => api(`/api/curves?id=${encodeURIComponent(r.id)}`)));
    const chosen = asked.filter((_, i) => answers[i].status === "fulfilled");
    const data = answers.filter((a) => a.status === "fulfilled").map((a) => a.value);
    const refused = asked.map((r, i) => (answers[i].status === "rejected" ? `${r.name}: ${answers[i].reason.message}` : null)).filter((x) => x);
    Object.values(overlayCharts).forEach((c) => c.destroy());
    Object.keys(overlayCharts).forEach((k) => delete overlayCharts[k]);
    const problems = refused.length ? el("p", { class: "error overlay-problems" }, `not shown: ${refused.join("; ")}`) : null;
    if (!chosen.length) { where.replaceChildren(problems); return; }
    const [accBox, acc] = overlayBox("overlay-acc", "Test accuracy (%)");
    const [lossBox, loss] = overlayBox("overlay-loss", "Training loss (smoothed, EMA 0.6)");
    where.replaceChildren(accBox, lossBox, ...(problems ? [problems] : []));
    const color = (i) => PALETTE[i % PALETTE.length];
    const accData = alignSeries(data.map((d) => d.test.map((p) => [p.x, missing(p.acc) ? null : 100 * p.acc])));
    const lossData = alignSeries(data.map((d) => {
      const smooth = ema(d.train.map((p) => p.loss), 0.6);
      return d.train.map((p, i) => [p.x, smooth[i]]);
    }));
    overlayCharts.acc = lineChart(acc, { ylabel: "test accuracy (%)", range: RANGES.percent, series: chosen.map((r, i) =>
      ({ label: r.name, color: color(i), points: true, format: (v) => v.toFixed(2) + "%" })) }, accData);
    overlayCharts.loss = lineChart(loss, { ylabel: "training loss", range: RANGES.fromZero, series: chosen.map((r, i) =>
      ({ label: r.name, color: color(i), points: false, format: (v) => fmt.sig(v) })) }, lossData);
    for (const [name, box] of [["acc", acc], ["loss", loss]]) fitWidth(box, () => overlayCharts[name]);
    const last = (series, show) => chosen.map((r, i) => {
      const ys = series[i + 1];
      for (let k = ys.length - 1; k >= 0; k--) if (!missing(ys[k])) return `${r.name} ${show(ys[k])} at epoch ${fmt.epoch(series[0][k])}`;
      return `${r.name} no points`;
    }).join("; ");
    describeChart(overlayCharts.acc, `Test accuracy against epoch; latest: ${last(accData, (v) => v.toFixed(2) + "%")}.`,
      document.getElementById("overlay-acc-summary"));
    describeChart(overlayCharts.loss, `Training loss (smoothed) against epoch; latest: ${last(lossData, (v) => fmt.sig(v))}.`,
      document.getElementById("overlay-loss-summary"));
    acc.dataset.points = String(accData.slice(1).flat().filter((v) => !missing(v)).length);
    loss.dataset.points = String(lossData.slice(1).flat().filter((v) => !missing(v)).length);
  } catch (err) { showError(where, err); }
}

async function load() {
  try {
    const data = await api("/api/runs");
    const listing = JSON.stringify(data);
    if (listing === lastListing) return;  // nothing changed: the table (and the focus in it) stays as it is
    lastListing = listing;
    runs = data.runs;
    document.getElementById("roots").textContent = `${runs.length} run folder(s) under ${data.roots.join(", ")}` +
      (data.missing_roots.length ? ` (not found: ${data.missing_roots.join(", ")})` : "");
    render();
    document.body.dataset.runs = String(runs.length);
  } catch (err) { showError(document.getElementById("roots"), err); }
}

header(null);
document.getElementById("compare").addEventListener("click", overlay);
load();
setInterval(() => { if (!document.hidden) load(); }, 5000);  // new runs and status changes, without a reload

// The studies (`cnnlab tune`) and sweeps under the roots, each a link to its page (its runs are rows below).
async function listExperiments() {
  try {
    const { experiments } = await api("/api/experiments");
    document.getElementById("experiments-section").hidden = experiments.length === 0;
    document.getElementById("experiments").replaceChildren(...experiments.map((x) => el("li", {},
      el("a", { href: runUrl("/experiment", x.id) }, x.title), ` — ${x.kind}, ${x.status}, ${x.runs} run(s)`,
      x.best_val_acc !== null ? `, best validation accuracy ${fmt.pct(x.best_val_acc)}` : "",
      x.error ? el("span", { class: "error" }, ` (unreadable: ${x.error})`) : null)));
  } catch (err) {
    /* the runs table below says what is wrong with the lab */
  }
}
listExperiments();
