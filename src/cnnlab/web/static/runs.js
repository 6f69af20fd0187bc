// The runs page: every run folder under the roots, sortable, with an overlay of the selected runs' curves.
"use strict";

const COLUMNS = [
  ["name", "run"], ["model", "model"], ["dataset", "dataset"], ["recipe", "recipe"], ["status", "status"],
  ["final_test_acc", "final test acc", fmt.pct], ["best_test_acc", "best test acc", fmt.pct],
  ["epochs", "epochs", (v, r) => `${v}/${r.epochs_planned ?? "?"}`], ["seconds", "time", fmt.secs],
  ["params", "parameters", fmt.num],
];
let runs = [], sortKey = "name", sortDir = 1;
const selected = new Set();

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;  // empty cells last, whichever the direction
  if (b === null || b === undefined) return -1;
  return (typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))) * sortDir;
}

function render() {
  const table = document.getElementById("runs-table");
  const head = el("tr", {}, el("th", {}, ""), COLUMNS.map(([key, label]) => el("th", {
    class: "sortable" + (key === sortKey ? (sortDir > 0 ? " sorted-asc" : " sorted-desc") : ""), "data-key": key,
    onclick: () => { sortDir = key === sortKey ? -sortDir : 1; sortKey = key; render(); },
  }, label)));
  table.tHead.replaceChildren(head);
  const rows = [...runs].sort((a, b) => compareValues(a[sortKey], b[sortKey]));
  table.tBodies[0].replaceChildren(...rows.map((run) => el("tr", { class: "run-row", "data-id": run.id },
    el("td", {}, el("input", { type: "checkbox", ...(selected.has(run.id) ? { checked: "" } : {}),
      onchange: (e) => { e.target.checked ? selected.add(run.id) : selected.delete(run.id); updateButton(); } })),
    COLUMNS.map(([key, , show]) => {
      const value = run[key];
      if (key === "name") return el("td", {}, el("a", { href: runUrl("/run", run.id) }, value));
      if (key === "status") return el("td", { class: statusClass(value) }, value);
      return el("td", { class: typeof value === "number" ? "num" : "" }, show ? show(value, run) : value ?? "");
    }))));
}

function updateButton() { document.getElementById("compare").disabled = selected.size === 0; }

async function overlay() {
  const where = document.getElementById("overlay");
  try {
    const chosen = runs.filter((r) => selected.has(r.id));
    const data = await Promise.all(chosen.map((r) => api(`/api/curves?id=${encodeURIComponent(r.id)}`)));
    const acc = el("canvas", { width: 560, height: 300, class: "chart", id: "overlay-acc" });
    const loss = el("canvas", { width: 560, height: 300, class: "chart", id: "overlay-loss" });
    where.replaceChildren(acc, loss);
    lineChart(acc, data.map((d, i) => ({ name: chosen[i].name, points: d.test.map((p) => [p.x, p.acc]) })), { ylabel: "test accuracy" });
    lineChart(loss, data.map((d, i) => ({ name: chosen[i].name, points: d.train.map((p) => [p.x, p.loss]) })), { ylabel: "training loss", log: true });
  } catch (err) { showError(where, err); }
}

async function load() {
  try {
    const data = await api("/api/runs");
    runs = data.runs;
    document.getElementById("roots").textContent = `${runs.length} run folder(s) under ${data.roots.join(", ")}` +
      (data.missing_roots.length ? ` (not found: ${data.missing_roots.join(", ")})` : "");
    render();
  } catch (err) { showError(document.getElementById("roots"), err); }
}

header(null);
document.getElementById("compare").addEventListener("click", overlay);
load();
setInterval(load, 5000);  // new runs and status changes, without a reload
