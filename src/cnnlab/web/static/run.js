// One run, followed live. Opened before its folder exists, the page asks again (less and less often) and says it
// waits for the run to start; while the run trains it polls its curves every second; when the run ends (complete,
// stopped or failed) it shows the final numbers and evaluates the test split, and stops polling.
"use strict";

const runId = param("id");
const ENDED = ["complete", "stopped", "failed"];
const follow = { status: null, epochs: -1, points: -1, ended: false, curves: null, run: null };
const enc = encodeURIComponent(runId || "");

function later(fn, ms) { setTimeout(fn, ms); }
function backoff(ms) { return Math.min(Math.round(ms * 1.5), 3000); }

// --- the run's state -------------------------------------------------------------------------------------

const STATE_TEXT = {
  waiting: () => `waiting for the run to start: its folder (${String(runId).split(":").slice(1).join(":") || runId}) does not exist yet; ` +
    "the page checks again every few seconds",
  running: (run) => `running: ${run.epochs} of ${run.epochs_planned ?? "?"} epochs done; the page follows it`,
  complete: (run) => `complete: ${run.epochs} of ${run.epochs_planned ?? "?"} epochs`,
  stopped: (run) => `stopped after ${run.epochs} of ${run.epochs_planned ?? "?"} epochs (interrupted; cnnlab train --resume continues it)`,
  failed: (run) => `failed after ${run.epochs} of ${run.epochs_planned ?? "?"} epochs (it ended without a summary or a checkpoint)`,
};

function setState(status, text) {
  follow.status = status;
  document.body.dataset.status = status;  // for tests and curious readers
  const line = document.getElementById("run-state");
  line.className = "run-state " + statusClass(status);
  if (line.textContent !== text) line.textContent = text;
  document.getElementById("live").replaceChildren(status === "running" ? el("span", { class: "badge" }, "live") : "");
}

function showRun(run) {
  follow.run = run;
  document.title = `cnnlab: ${run.name}`;
  document.getElementById("title").textContent = run.name;
  const done = run.status === "complete";
  const facts = [
    ["model", run.model ?? "?"], ["dataset", run.dataset ?? "?"], ["recipe", run.recipe ?? "?"],
    ["status", el("span", { class: statusClass(run.status) }, run.status)],
    ["epochs", `${run.epochs}/${run.epochs_planned ?? "?"}`],
    [done ? "final test accuracy" : "latest test accuracy", fmt.pct(run.final_test_acc) || "not yet"],
    ["best test accuracy", fmt.pct(run.best_test_acc) || "not yet"],
    ["time", fmt.secs(run.seconds) || "–"],
  ];
  if (run.params) facts.push(["parameters", fmt.num(run.params)]);
  document.getElementById("facts").replaceChildren(...facts.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  const text = (STATE_TEXT[run.status] || (() => run.status))(run);
  setState(run.status, text);
  document.getElementById("config").textContent = JSON.stringify({ config: run.config, ...run.meta }, null, 2);
  document.getElementById("files").replaceChildren(...run.files.map((f) =>
    el("li", {}, el("a", { href: f.url }, f.name), ` (${fmt.num(f.bytes)} bytes)`)));
  drawCurves(run.curves);
  follow.epochs = run.curves.epochs.length;
}

// Open the run: a missing folder is "not started yet" (asked again with backoff), an unreadable one is the end.
async function openRun(delay = 500) {
  if (!runId) { setState("error", "no run named: open a run from the runs page"); return; }
  let run;
  try {
    run = await api(`/api/run?id=${enc}`);
  } catch (err) {
    if (err.status === 404) {
      setState("waiting", STATE_TEXT.waiting());
      document.getElementById("analysis").replaceChildren(el("p", { class: "note" }, "The test split is evaluated once the run has ended."));
    } else if (err.status === undefined) {
      setState(follow.status || "offline", "the lab does not answer; trying again…");
    } else {
      setState("error", String(err.message || err));  // unreadable: nothing will change by asking again
      document.getElementById("analysis").replaceChildren();
      return;
    }
    later(() => openRun(backoff(delay)), delay);
    return;
  }
  showRun(run);
  if (ENDED.includes(run.status)) ended();
  else {
    analysisWaits();
    later(poll, 1000);
  }
}

// While the run trains: its curves every second (one small request); the run itself when an epoch or the run ends.
async function poll(delay = 1000) {
  let c;
  try {
    c = await api(`/api/curves?id=${enc}`);
  } catch (err) {
    if (err.status === 404) { openRun(); return; }  // the folder went away (moved, renamed): wait for it again
    if (err.status !== undefined && err.status !== 503) { setState("error", String(err.message || err)); return; }
    setState(follow.status, "the lab does not answer; trying again…");
    later(() => poll(backoff(delay)), delay);
    return;
  }
  let status = c.status;
  if (status !== follow.status || c.epochs.length !== follow.epochs) {
    try {
      const run = await api(`/api/run?id=${enc}`);
      showRun(run);
      status = run.status;
    } catch (err) { /* asked again at the next poll */ }
  } else if (c.points !== follow.points) {
    drawCurves(c);
  }
  if (ENDED.includes(status)) { ended(); return; }  // the end: no more requests
  later(poll, document.hidden ? 5000 : 1000);
}

function ended() {
  if (follow.ended) return;
  follow.ended = true;
  document.body.dataset.polling = "stopped";
  loadAnalysis();
}

function analysisWaits() {
  document.getElementById("analysis").replaceChildren(el("p", { class: "note" },
    "The run is still training: its best checkpoint may still change, so the test split is evaluated once the run has ended."));
}

// --- curves ---------------------------------------------------------------------------------------------------

const charts = {};
let xZoom = null, syncing = false;

function smoothing() { return Number(document.getElementById("smoothing").value); }

// The three charts' series and data: train per logging interval (raw, faint, and smoothed), test and validation
// per epoch, all against fractional epochs.
function chartData(c) {
  // One train point per epoch (a run without steps.csv) is not smoothed: an average of so few would only lag.
  const w = smoothing(), train = c.train;
  const trainX = train.map((p) => p.x);
  const zip = (xs, ys) => xs.map((x, i) => [x, ys[i]]);
  const per = (list, key, scale = 1) => list.map((p) => [p.x, missing(p[key]) ? null : scale * p[key]]);
  const specs = {}, data = {};
  const byEpoch = c.train_per === "epoch";
  const epochSeries = (key, scale, format) => {
    const values = train.map((p) => (missing(p[key]) ? null : scale * p[key]));
    const series = byEpoch ? [{ label: "train (epoch mean)", color: PALETTE[0], width: 2, format }] : [
      { label: "train, raw", color: faint(PALETTE[0]), width: 1.2, points: false, format },
      { label: "train, smoothed", color: PALETTE[0], width: 2, format },
    ];
    const lists = byEpoch ? [zip(trainX, values)] : [zip(trainX, values), zip(trainX, ema(values, w))];
    series.push({ label: "test", color: PALETTE[1], points: true, format });
    lists.push(per(c.test, key, scale));
    if (c.val.length) {
      series.push({ label: "validation", color: PALETTE[2], points: true, dash: [6, 4], format });
      lists.push(per(c.val, key, scale));
    }
    return [series, alignSeries(lists)];
  };
  [specs.loss, data.loss] = epochSeries("loss", 1, (v) => fmt.sig(v));
  [specs.acc, data.acc] = epochSeries("acc", 100, (v) => v.toFixed(2) + "%");
  specs.lr = [{ label: "learning rate", color: PALETTE[3], points: false, format: (v) => fmt.sig(v, 3) }];
  data.lr = alignSeries([per(train, "lr")]);
  return { specs, data };
}

const CHARTS = {
  loss: { ylabel: "loss", range: RANGES.fromZero },
  acc: { ylabel: "accuracy (%)", range: RANGES.percent, suffix: "" },
  lr: { ylabel: "learning rate", range: RANGES.fromZero },
};

function onScale(u, key) {
  // Zoom on one chart zooms the others to the same epochs; a live update keeps the zoom.
  if (key !== "x" || syncing) return;
  const { min, max } = u.scales.x, xs = u.data[0];
  xZoom = !xs.length || (min <= xs[0] + 1e-9 && max >= xs[xs.length - 1] - 1e-9) ? null : { min, max };
  syncing = true;
  for (const other of Object.values(charts)) {
    if (other !== u && (other.scales.x.min !== min || other.scales.x.max !== max)) other.setScale("x", { min, max });
  }
  syncing = false;
}

function lastOf(xs, ys) {
  for (let i = ys.length - 1; i >= 0; i--) if (!missing(ys[i])) return [xs[i], ys[i]];
  return null;
}

function summaries(c, data, specs) {
  // What each chart shows, in words: its accessible name and the line under it.
  for (const name of Object.keys(CHARTS)) {
    const [xs, ...columns] = data[name], parts = [];
    specs[name].forEach((s, i) => {
      if (s.label.endsWith(", raw")) return;
      const last = lastOf(xs, columns[i]);
      if (last) parts.push(`${s.label.replace(", smoothed", ` (smoothed ${smoothing().toFixed(2)})`)} ${s.format(last[1])} at epoch ${fmt.epoch(last[0])}`);
    });
    const title = { loss: "Loss", acc: "Accuracy", lr: "Learning rate" }[name];
    const text = parts.length ? `${title} against epoch; latest: ${parts.join("; ")}.` : `${title}: no points yet.`;
    describeChart(charts[name], text, document.getElementById(`curve-${name}-summary`));
  }
}

function epochTable(c) {
  const hasVal = c.val.length > 0;
  const columns = [["epoch", "epoch", (v) => String(v)], ["train_loss", "train loss", fmt.sig], ["train_acc", "train acc", fmt.pct],
    ["test_loss", "test loss", fmt.sig], ["test_acc", "test acc", fmt.pct]];
  if (hasVal) columns.push(["val_loss", "validation loss", fmt.sig], ["val_acc", "validation acc", fmt.pct]);
  columns.push(["lr", "learning rate", (v) => fmt.sig(v, 3)]);
  const table = document.getElementById("epoch-table");
  table.tHead.replaceChildren(el("tr", {}, columns.map(([, label]) => el("th", { scope: "col" }, label))));
  table.tBodies[0].replaceChildren(...c.epochs.map((row) => el("tr", {}, columns.map(([key, , show]) =>
    el("td", { class: "num" }, missing(row[key]) ? "–" : show(row[key]))))));
}

function drawCurves(c) {
  follow.curves = c;
  follow.points = c.points;
  const { specs, data } = chartData(c);
  const shape = JSON.stringify(Object.values(specs).map((s) => s.map((x) => x.label)));
  if (follow.shape !== shape) {  // first draw, or a series appeared (validation): build the charts
    follow.shape = shape;
    for (const [name, chart] of Object.entries(CHARTS)) {
      if (charts[name]) charts[name].destroy();
      const box = document.getElementById(`curve-${name}`);
      charts[name] = lineChart(box, { ...chart, series: specs[name], sync: "run-curves", hooks: { setScale: [onScale] } }, data[name]);
      if (!box.dataset.fitted) { box.dataset.fitted = "1"; fitWidth(box, () => charts[name]); }
    }
    if (xZoom) for (const chart of Object.values(charts)) chart.setScale("x", xZoom);
  } else {
    const keep = xZoom;
    syncing = true;
    for (const name of Object.keys(CHARTS)) charts[name].setData(data[name]);
    if (keep) for (const chart of Object.values(charts)) chart.setScale("x", keep);
    syncing = false;
    xZoom = keep;
  }
  for (const name of Object.keys(CHARTS)) {
    const [, ...columns] = data[name];
    const shown = columns.filter((_, i) => !specs[name][i].label.endsWith(", smoothed"));
    document.getElementById(`curve-${name}`).dataset.points = String(shown.flat().filter((v) => !missing(v)).length);
  }
  summaries(c, data, specs);
  epochTable(c);
  const per = c.train_per === "epoch" ? "one train point per epoch (metrics.csv)" : "train points per logging interval (~10% of an epoch)";
  document.getElementById("curve-source").textContent = `${c.points} points from ${c.source}: ${per}, test` +
    (c.val.length ? " and validation" : "") + " points per epoch" + (c.steps_error ? ` (steps.csv: ${c.steps_error})` : "");
  document.body.dataset.points = String(c.points);
}

function resetZoom() {
  xZoom = null;
  syncing = true;
  for (const chart of Object.values(charts)) {
    const xs = chart.data[0];
    if (xs.length) chart.setScale("x", { min: xs[0], max: xs[xs.length - 1] });
  }
  syncing = false;
}

// --- the test split --------------------------------------------------------------------------------------------

function confusionTable(a) {
  const k = a.classes.length, short = a.classes.map((c) => c.split(" - ")[0]);
  const max = Math.max(1, ...a.confusion.flatMap((row, t) => row.filter((_, p) => p !== t)));
  const buttons = [];
  const move = (e) => {
    // Arrow keys walk the matrix (one Tab stop for all its cells); Enter or Space opens a cell.
    const t = +e.currentTarget.dataset.true, p = +e.currentTarget.dataset.predicted;
    const to = { ArrowLeft: [t, p - 1], ArrowRight: [t, p + 1], ArrowUp: [t - 1, p], ArrowDown: [t + 1, p],
      Home: [t, 0], End: [t, k - 1] }[e.key];
    if (!to) return;
    e.preventDefault();
    const [nt, np] = [Math.min(k - 1, Math.max(0, to[0])), Math.min(k - 1, Math.max(0, to[1]))];
    buttons.forEach((b) => (b.tabIndex = -1));
    const next = buttons[nt * k + np];
    next.tabIndex = 0;
    next.focus();
  };
  const table = el("table", { id: "confusion" },
    el("caption", { class: "note" }, "rows: true class; columns: predicted class"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "true class"), "true \\ predicted"),
      short.map((s, i) => el("th", { scope: "col", title: a.classes[i] }, s)))));
  const body = el("tbody");
  a.confusion.forEach((row, t) => {
    body.append(el("tr", {}, el("th", { scope: "row", title: a.classes[t] }, short[t]), row.map((count, p) => {
      const strength = t === p ? 0 : count / max;
      const label = `true ${a.classes[t]} predicted ${a.classes[p]}: ${count} image${count === 1 ? "" : "s"}`;
      const button = el("button", { type: "button", class: "cell-button", "aria-label": label, title: label,
        "data-true": t, "data-predicted": p, tabindex: t === 0 && p === 0 ? "0" : "-1",
        onclick: () => showCell(t, p), onkeydown: move }, count);
      buttons.push(button);
      const style = t === p ? "background:#dafbe1" : `background:rgba(207,34,46,${(0.55 * strength).toFixed(2)})`;
      return el("td", { class: "cell num" + (t === p ? " diagonal" : ""), style, "data-true": t, "data-predicted": p }, button);
    })));
  });
  table.append(body);
  return el("div", { class: "table-scroll", role: "region", "aria-label": "confusion matrix" }, table);
}

async function showCell(t, p) {
  const where = document.getElementById("cell-images");
  where.replaceChildren(el("p", { class: "note" }, "loading…"));
  try {
    const cell = await api(`/api/cell?id=${enc}&true=${t}&predicted=${p}`);
    where.replaceChildren(el("h3", {}, `True ${cell.true}, predicted ${cell.predicted}`),
      el("p", {}, `${cell.count} test image(s)` + (cell.count > cell.images.length ? `, the ${cell.images.length} most confident shown` : "") +
        (cell.images.length ? "; open one with Enter or a click" : "")),
      el("div", { class: "thumbs" }, cell.images.map((im) => thumb(im))));
  } catch (err) { showError(where, err); }
}

function perClass(a) {
  // The bars start a little below the worst class (the scale is labelled), so 89% and 96% look different.
  const values = a.per_class_accuracy.filter((v) => !missing(v)).map((v) => 100 * v);
  const lo = values.length ? Math.max(0, Math.min(90, Math.floor((Math.min(...values) - 3) / 5) * 5)) : 0;
  const width = (v) => (missing(v) ? 0 : Math.max(0, Math.min(100, ((100 * v - lo) / (100 - lo)) * 100)));
  return el("div", { class: "bars per-class" },
    el("p", { class: "note" }, lo > 0 ? `bars start at ${lo}% (not 0%), so the differences show` : "bars from 0% to 100%"),
    a.classes.map((c, i) => {
      const v = a.per_class_accuracy[i];
      return el("div", { class: "bar" }, el("span", { class: "label", title: c }, c),
        el("span", { class: "track", "aria-hidden": "true" }, el("span", { class: "fill", style: `width:${width(v).toFixed(1)}%` })),
        el("span", { class: "value" }, missing(v) ? "n/a" : fmt.pct(v)));
    }),
    el("div", { class: "bar axis", "aria-hidden": "true" }, el("span", { class: "label" }),
      el("span", { class: "track scale" }, el("span", {}, `${lo}%`), el("span", {}, "100%")), el("span", { class: "value" })));
}

async function loadAnalysis() {
  const where = document.getElementById("analysis");
  where.replaceChildren(el("p", { class: "note" }, "evaluating the best checkpoint on the test split…"));
  try {
    const a = await api(`/api/analysis?id=${enc}`);
    where.replaceChildren(
      el("p", { class: "note" }, `${a.checkpoint} on ${a.count} test images: ${fmt.pct(a.accuracy)} accuracy. ` +
        "Open a cell of the confusion matrix (click it, or Tab to the matrix, move with the arrow keys, press Enter) to see its images."),
      el("div", { class: "row" }, el("div", { class: "matrix-box" }, el("h3", {}, "Confusion matrix"), confusionTable(a)),
        el("div", {}, el("h3", {}, "Per-class accuracy"), perClass(a))),
      el("div", { id: "cell-images", "aria-live": "polite" }),
      el("h3", {}, "Sample predictions"), el("div", { class: "thumbs", id: "samples" }, a.samples.map((im) => thumb(im))),
      el("h3", {}, "Most confident mistakes"),
      el("div", { class: "thumbs", id: "mistakes" }, a.mistakes.length ? a.mistakes.map((im) => thumb(im)) : "none"));
    document.body.dataset.analysis = "loaded";
  } catch (err) {
    where.replaceChildren(el("p", { class: "error" }, `The test split cannot be evaluated: ${err.message || err}`));
  }
}

// --- start ---------------------------------------------------------------------------------------------------------

header(runId);
const slider = document.getElementById("smoothing");
try { const saved = localStorage.getItem("cnnlab-smoothing"); if (saved !== null) slider.value = saved; } catch (e) { /* private mode */ }
document.getElementById("smoothing-value").textContent = smoothing().toFixed(2);
slider.addEventListener("input", () => {
  document.getElementById("smoothing-value").textContent = smoothing().toFixed(2);
  try { localStorage.setItem("cnnlab-smoothing", slider.value); } catch (e) { /* private mode */ }
  if (follow.curves) drawCurves(follow.curves);
});
document.getElementById("reset-zoom").addEventListener("click", resetZoom);
openRun();
