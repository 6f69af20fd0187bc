// Shared helpers of the web lab pages: JSON fetches, DOM building, number formats, charts (uPlot, vendored),
// heatmaps and thumbnails. Data goes into the page as text (textContent, never innerHTML), styles through the
// CSSOM (the Content-Security-Policy's style-src 'self' refuses style attributes, not el.style).
"use strict";

// A JSON request; a refusal throws an Error with the lab's one-line reason and the HTTP status (err.status),
// a lab that does not answer throws without a status.
async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const err = new Error((body && body.detail) || `${response.status} ${response.statusText}`);
    err.status = response.status;
    throw err;
  }
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    // Through the CSSOM: the Content-Security-Policy (style-src 'self') refuses style attributes.
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const missing = (v) => v === null || v === undefined || (typeof v === "number" && !isFinite(v));
const fmt = {
  pct: (v) => (missing(v) ? "" : (100 * v).toFixed(2) + "%"),
  num: (v) => (missing(v) ? "" : Number(v).toLocaleString("en")),
  secs: (v) => (missing(v) ? "" : v < 120 ? v.toFixed(1) + " s" : (v / 60).toFixed(1) + " min"),
  // A loss or a learning rate: four significant digits, small values in scientific notation.
  sig: (v, digits = 4) => (missing(v) ? "" : v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(digits - 1) : String(+v.toPrecision(digits))),
  epoch: (v) => (missing(v) ? "" : String(+v.toFixed(3))),
};

function param(name) { return new URLSearchParams(location.search).get(name); }
function runUrl(page, id) { return `${page}?id=${encodeURIComponent(id)}`; }
function statusClass(status) { return "status-" + String(status || "").split(":")[0]; }

function header(id) {
  // The navigation bar; pages of one run get links to the run's other pages.
  const here = location.pathname;
  const link = (href, text, cls) => el("a", { href, class: cls, "aria-current": href.split("?")[0] === here ? "page" : null }, text);
  const links = [el("a", { class: "brand", href: "/" }, "cnnlab lab"), link("/", "Runs")];
  if (id) links.push(link(runUrl("/run", id), "Run"), link(runUrl("/playground", id), "Playground"), link(runUrl("/filters", id), "Filters"));
  document.body.prepend(el("header", {}, el("nav", { "aria-label": "lab" }, links)));
}

// Keyboard use of something that acts on click (a legend entry): Enter and Space click it.
function pressable(node) {
  node.tabIndex = 0;
  node.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); node.click(); }
  });
  return node;
}

// ---------------------------------------------------------------------------------------------------------
// Charts: uPlot line charts against epochs, with hover values (cursor + legend), drag-zoom on x (double-click
// or a "reset zoom" button undoes it) and y ranges a student reads correctly: rates never below 0, accuracy in %.

const PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#57606a"];
function faint(hex, alpha = 0.28) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${alpha})`;
}

// TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0.
function ema(values, weight) {
  let last = 0, n = 0;
  return values.map((v) => {
    if (missing(v)) return null;
    n += 1;
    last = last * weight + (1 - weight) * v;
    return weight > 0 ? last / (1 - Math.pow(weight, n)) : v;
  });
}

// Series of [x, y] points on different x values -> uPlot's aligned columns [xs, ys1, ys2, ...] (null: no point).
function alignSeries(lists) {
  const key = (x) => Math.round(x * 1e9) / 1e9;
  const xs = [...new Set(lists.flatMap((l) => l.filter((p) => !missing(p[0])).map((p) => key(p[0]))))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  return [xs, ...lists.map((l) => {
    const ys = new Array(xs.length).fill(null);
    for (const [x, y] of l) if (!missing(x)) ys[at.get(key(x))] = missing(y) ? null : y;
    return ys;
  })];
}

const RANGES = {
  // loss, learning rate: from 0 (a rate or a loss is never negative) to a little above the largest shown.
  fromZero: (u, min, max) => [0, !missing(max) && max > 0 ? max * 1.08 : 1],
  // accuracy in %: around the values shown, in steps of 5, never beyond 0..100 (one point does not stretch it).
  percent: (u, min, max) => {
    if (missing(min) || missing(max)) return [0, 100];
    const pad = Math.max(2, (max - min) * 0.1);
    const lo = Math.max(0, Math.floor((min - pad) / 5) * 5), hi = Math.min(100, Math.ceil((max + pad) / 5) * 5);
    return hi > lo ? [lo, hi] : [Math.max(0, hi - 10), hi];
  },
};

// Tick labels with as many decimals as the tick step has: 1.25 stays 1.25; tiny steps in scientific notation.
function tickLabels(suffix = "") {
  return (u, splits, axisIdx, space, incr) => splits.map((v) => {
    if (missing(v)) return "";
    if (v !== 0 && incr < 1e-3) return v.toExponential(Math.max(0, Math.round(Math.log10(Math.abs(v) / incr)))) + suffix;
    const text = String(+Number(incr).toPrecision(6)), dot = text.indexOf(".");
    return v.toFixed(dot < 0 ? 0 : Math.min(10, text.length - dot - 1)) + suffix;
  });
}

function latest(values) {
  for (let i = (values || []).length - 1; i >= 0; i--) if (!missing(values[i])) return values[i];
  return null;
}

// One line chart in `target` (emptied): spec = {ylabel, range, suffix, sync, height, hooks,
// series: [{label, color, width, dash, points, format}]}; data = [xs, ys...]. Returns the uPlot.
function lineChart(target, spec, data) {
  const width = Math.max(240, Math.floor(target.clientWidth || 360));
  const opts = {
    width,
    height: spec.height || 240,
    scales: { x: { time: false }, y: { range: spec.range || RANGES.fromZero } },
    axes: [
      { label: spec.xlabel || "epoch", values: tickLabels(), stroke: "#1f2328", grid: { stroke: "#eaeef2" } },
      { label: spec.ylabel, values: tickLabels(spec.suffix || ""), size: 64, stroke: "#1f2328", grid: { stroke: "#eaeef2" } },
    ],
    series: [
      // Away from the chart the legend shows each series' latest value; over it, the values under the cursor.
      { label: spec.xlabel || "epoch", value: (u, v, si, idx) => (idx === null || idx === undefined ? "latest" : missing(v) ? "–" : fmt.epoch(v)) },
      ...spec.series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: s.width ?? 1.8,
        dash: s.dash,
        spanGaps: true,
        ...(s.points === undefined ? {} : { points: s.points ? { show: true, size: 7, fill: s.color, stroke: s.color } : { show: false } }),
        value: (u, v, si, idx) => {
          if (idx === null || idx === undefined) v = latest(u.data[si]);
          return missing(v) ? "–" : s.format(v);
        },
      })),
    ],
    cursor: { drag: { x: true, y: false }, ...(spec.sync ? { sync: { key: spec.sync } } : {}) },
    legend: { live: true },
    hooks: spec.hooks || {},
  };
  target.replaceChildren();
  const chart = new uPlot(opts, data, target);
  chart.root.querySelectorAll(".u-legend .u-series:not(:first-child) th").forEach((th) => {
    pressable(th);
    th.title = "show or hide this series (click, Enter or Space)";
  });
  const wrap = chart.root.querySelector(".u-wrap");
  if (wrap) wrap.setAttribute("role", "img");
  return chart;
}

// The text alternative of a chart: its canvas' accessible name, also shown under it.
function describeChart(chart, text, summary) {
  const wrap = chart && chart.root.querySelector(".u-wrap");
  if (wrap) wrap.setAttribute("aria-label", text);
  if (summary) summary.textContent = text;
}

// Charts follow their box's width (a phone's, or a resized window's); `chart()` gives the box's chart now.
function fitWidth(box, chart) {
  if (typeof ResizeObserver === "undefined") return;
  let last = box.clientWidth;
  new ResizeObserver(() => {
    const width = Math.floor(box.clientWidth), current = chart();
    if (current && width > 0 && Math.abs(width - last) >= 2) {
      last = width;
      current.setSize({ width: Math.max(240, width), height: current.height });
    }
  }).observe(box);
}

// ---------------------------------------------------------------------------------------------------------
// Colour maps as 256-entry lookup tables, interpolated from a few stops (matplotlib's viridis, jet-like, RdBu).
function makeLut(stops) {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (stops.length - 1), k = Math.min(Math.floor(t), stops.length - 2), u = t - k;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = stops[k][c] + (stops[k + 1][c] - stops[k][c]) * u;
  }
  return lut;
}
const VIRIDIS = makeLut([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]);
const JET = makeLut([[0, 0, 143], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]]);
const RDBU = makeLut([[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77], [103, 0, 31]]);
const GREY = makeLut([[0, 0, 0], [255, 255, 255]]);

function decodeBytes(b64) {
  const text = atob(b64), bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

// values: uint8 array of h*w (or h*w*3 when rgb) -> a canvas of w x h pixels, shown larger by CSS.
function heatCanvas(values, w, h, lut, { rgb = false, alpha = null } = {}) {
  const canvas = el("canvas", { width: w, height: h });
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    if (rgb) { for (let c = 0; c < 3; c++) image.data[i * 4 + c] = values[i * 3 + c]; }
    else { const v = values[i]; image.data[i * 4] = lut[v * 3]; image.data[i * 4 + 1] = lut[v * 3 + 1]; image.data[i * 4 + 2] = lut[v * 3 + 2]; }
    image.data[i * 4 + 3] = alpha ? alpha(values[i]) : 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

// A test image with its prediction: a button (Enter, Space or a click) that calls `onclick`, or by default
// opens the image larger in a dialog.
function thumb(image, { onclick = null } = {}) {
  const wrong = image.true !== undefined && image.true !== image.predicted;
  const caption = `${image.predicted.split(" - ")[0]} ${(100 * image.probability).toFixed(0)}%` +
    (wrong ? ` (${image.true.split(" - ")[0]})` : "");
  const described = `test image #${image.index}: predicted ${image.predicted} (${(100 * image.probability).toFixed(1)}%)` +
    (image.true !== undefined ? `, true ${image.true}` : "");
  const button = el("button", { type: "button", class: "thumb-button", title: described,
    "aria-label": described + (onclick ? "" : "; open larger") }, el("img", { src: image.src, alt: "" }));
  button.addEventListener("click", onclick || (() => openImage(image, button)));
  return el("figure", { class: (wrong ? "wrong" : "") + " pick" }, button, el("figcaption", { "aria-hidden": "true" }, caption));
}

// One test image, large, in a modal dialog: Escape or "Close" closes it and gives the focus back.
function openImage(image, opener) {
  let dialog = document.getElementById("image-dialog");
  if (!dialog) {
    dialog = el("dialog", { id: "image-dialog", "aria-labelledby": "image-dialog-title" });
    dialog.addEventListener("close", () => { if (dialog.opener && dialog.opener.isConnected) dialog.opener.focus(); });
    dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });  // the backdrop
    document.body.append(dialog);
  }
  dialog.opener = opener;
  const close = el("button", { type: "button", class: "close" }, "Close");
  close.addEventListener("click", () => dialog.close());
  dialog.replaceChildren(
    el("h2", { id: "image-dialog-title" }, `Test image #${image.index}`),
    el("img", { src: image.src, alt: `test image #${image.index}`, class: "pixelated large", width: 224, height: 224 }),
    el("p", {}, `predicted ${image.predicted} with probability ${(100 * image.probability).toFixed(1)}%`),
    image.true !== undefined ? el("p", { class: image.true === image.predicted ? "" : "error" }, `true class: ${image.true}`) : null,
    el("p", {}, close));
  dialog.showModal();
  close.focus();
}

function showError(where, err) {
  where.replaceChildren(el("p", { class: "error" }, String(err.message || err)));
}
