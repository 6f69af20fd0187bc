// One run: curves (polled every second until the run is complete), the test-split analysis, config and files.
"use strict";

const runId = param("id");
let shownPoints = -1;

function drawCurves(c) {
  const train = c.train, test = c.test;
  lineChart(document.getElementById("curve-loss"), [
    { name: "train", points: train.map((p) => [p.x, p.loss]) },
    { name: "test", points: test.map((p) => [p.x, p.loss]), dashed: true },
  ], { ylabel: "loss", log: true });
  lineChart(document.getElementById("curve-acc"), [
    { name: "train", points: train.map((p) => [p.x, p.acc]) },
    { name: "test", points: test.map((p) => [p.x, p.acc]), dashed: true },
  ], { ylabel: "accuracy" });
  lineChart(document.getElementById("curve-lr"), [{ name: "lr", points: train.map((p) => [p.x, p.lr]) }], { ylabel: "learning rate" });
  document.getElementById("curve-source").textContent = `${c.points} points from ${c.source}`;
  document.body.dataset.points = String(c.points);
}

async function poll() {
  // Live curves: one small JSON request a second while the run is not complete; stops once it is.
  try {
    const c = await api(`/api/curves?id=${encodeURIComponent(runId)}`);
    if (c.points !== shownPoints) { drawCurves(c); shownPoints = c.points; }
    const live = c.status === "running" || c.status === "stopped" || c.status === "failed";
    document.getElementById("live").replaceChildren(c.status === "running" ? el("span", { class: "badge" }, "live") : "");
    document.getElementById("facts").dataset.status = c.status;
    if (live) setTimeout(poll, 1000);
  } catch (err) { setTimeout(poll, 3000); }
}

function confusionTable(a) {
  const k = a.classes.length, short = a.classes.map((c) => c.split(" - ")[0]);
  const max = Math.max(1, ...a.confusion.flatMap((row, t) => row.filter((_, p) => p !== t)));
  const table = el("table", { id: "confusion" }, el("tr", {}, el("th", {}, "true \\ predicted"), short.map((s) => el("th", {}, s))));
  a.confusion.forEach((row, t) => {
    table.append(el("tr", {}, el("th", { title: a.classes[t] }, short[t]), row.map((count, p) => {
      const strength = t === p ? 0 : count / max;
      const style = t === p ? "background:#dafbe1" : `background:rgba(207,34,46,${(0.8 * strength).toFixed(2)})`;
      return el("td", { class: "cell num", style, "data-true": t, "data-predicted": p,
        title: `${a.classes[t]} taken for ${a.classes[p]}: ${count}`, onclick: () => showCell(t, p) }, count);
    })));
  });
  return table;
}

async function showCell(t, p) {
  const where = document.getElementById("cell-images");
  where.replaceChildren(el("p", { class: "note" }, "loading…"));
  try {
    const cell = await api(`/api/cell?id=${encodeURIComponent(runId)}&true=${t}&predicted=${p}`);
    where.replaceChildren(el("p", {}, `true ${cell.true}, predicted ${cell.predicted}: ${cell.count} test image(s)` +
      (cell.count > cell.images.length ? `, the ${cell.images.length} most confident shown` : "")),
    el("div", { class: "thumbs" }, cell.images.map((im) => thumb(im))));
  } catch (err) { showError(where, err); }
}

function perClass(a) {
  return el("div", { class: "bars per-class" }, a.classes.map((c, i) => {
    const v = a.per_class_accuracy[i];
    return el("div", { class: "bar" }, el("span", { class: "label", title: c }, c),
      el("span", { class: "track" }, el("div", { class: "fill", style: `width:${(100 * (v || 0)).toFixed(1)}%` })),
      el("span", {}, v === null ? "n/a" : fmt.pct(v)));
  }));
}

async function loadAnalysis() {
  const where = document.getElementById("analysis");
  try {
    const a = await api(`/api/analysis?id=${encodeURIComponent(runId)}`);
    where.replaceChildren(
      el("p", { class: "note" }, `${a.checkpoint} on ${a.count} test images: ${fmt.pct(a.accuracy)} accuracy. ` +
        "Click a cell of the confusion matrix to see its images."),
      el("div", { class: "row" }, el("div", {}, el("h3", {}, "Confusion matrix"), confusionTable(a)),
        el("div", {}, el("h3", {}, "Per-class accuracy"), perClass(a))),
      el("div", { id: "cell-images" }),
      el("h3", {}, "Sample predictions"), el("div", { class: "thumbs", id: "samples" }, a.samples.map((im) => thumb(im))),
      el("h3", {}, "Most confident mistakes"),
      el("div", { class: "thumbs", id: "mistakes" }, a.mistakes.length ? a.mistakes.map((im) => thumb(im)) : "none"));
  } catch (err) { showError(where, err); }
}

async function load() {
  header(runId);
  try {
    const run = await api(`/api/run?id=${encodeURIComponent(runId)}`);
    document.title = `cnnlab: ${run.name}`;
    document.getElementById("title").textContent = run.name;
    document.getElementById("facts").replaceChildren(`${run.model ?? "?"} on ${run.dataset ?? "?"}, recipe ${run.recipe ?? "?"}, `,
      el("span", { class: statusClass(run.status) }, run.status), `, ${run.epochs}/${run.epochs_planned ?? "?"} epochs, ` +
      `final ${fmt.pct(run.final_test_acc) || "n/a"}, best ${fmt.pct(run.best_test_acc) || "n/a"}, ${fmt.secs(run.seconds)}`);
    document.getElementById("config").textContent = JSON.stringify({ config: run.config, ...run.meta }, null, 2);
    document.getElementById("files").replaceChildren(...run.files.map((f) =>
      el("li", {}, el("a", { href: f.url }, f.name), ` (${fmt.num(f.bytes)} bytes)`)));
    drawCurves(run.curves); shownPoints = run.curves.points;
    if (run.status !== "complete") setTimeout(poll, 1000);
    if (run.status.startsWith("unreadable")) {
      document.getElementById("analysis").replaceChildren(el("p", { class: "error" }, run.status));
    } else { loadAnalysis(); }
  } catch (err) { showError(document.querySelector("main"), err); }
}

load();
