// A study (`cnnlab tune`) or sweep folder: its trials table with links to each trial's run page, the best trial,
// the figures the search wrote (best over time, importances, parallel coordinates) and its settings. Refreshed
// every 5 s while the study runs; a finished one is read once.
"use strict";

async function load() {
  const id = param("id");
  const state = document.getElementById("state");
  let study;
  try {
    study = await api(`/api/experiment?id=${encodeURIComponent(id || "")}`);
  } catch (err) {
    showError(state, err);
    return;
  }
  document.title = `cnnlab ${study.kind}: ${study.title}`;
  document.getElementById("title").textContent = study.title;
  state.textContent = study.error ? `unreadable: ${study.error}` : `${study.kind}, ${study.status}: ${study.runs} run(s)`;
  state.className = "run-state " + statusClass(study.status);
  document.getElementById("caption").textContent = study.caption;
  const best = document.getElementById("best");
  if (study.best) {
    const params = Object.entries(study.best.params || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    const runId = study.best.run ? study.run_ids[study.best.run.split("/").pop()] : null;
    best.replaceChildren(el("p", {},
      `trial ${study.best.trial}: validation accuracy ${fmt.pct(study.best.val_acc)}`,
      study.best.test_acc !== undefined && study.best.test_acc !== null ? `, test accuracy ${fmt.pct(study.best.test_acc)} (read once, after the search)` : "",
      params ? ` with ${params}` : "",
      runId ? [" — ", el("a", { href: runUrl("/run", runId) }, "open its run")] : null));
  }
  document.getElementById("figures").replaceChildren(...study.figures.map((f) =>
    el("figure", {}, el("a", { href: f.url }, el("img", { src: f.url, alt: `${f.name}: a figure of the ${study.kind}`, class: "study-figure" })),
      el("figcaption", {}, f.name))));
  const table = document.getElementById("trials");
  const runColumn = study.headers.indexOf("run");
  table.tHead.replaceChildren(el("tr", {}, study.headers.map((h) => el("th", { scope: "col" }, h))));
  table.tBodies[0].replaceChildren(...study.rows.map((row) => el("tr", {}, row.map((value, i) => {
    const runId = i === runColumn ? study.run_ids[String(value)] : null;
    return el("td", {}, runId ? el("a", { href: runUrl("/run", runId) }, String(value)) : String(value));
  }))));
  document.getElementById("settings").textContent = JSON.stringify(study.settings, null, 2);
  if (study.status === "running") setTimeout(load, document.hidden ? 15000 : 5000);
}

header(null);
load();
