// Shared helpers of the web lab pages: JSON fetches, DOM building, number formats, line charts and heatmaps.
"use strict";

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.detail) || `${response.status} ${response.statusText}`);
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

const fmt = {
  pct: (v) => (v === null || v === undefined ? "" : (100 * v).toFixed(2) + "%"),
  num: (v) => (v === null || v === undefined ? "" : Number(v).toLocaleString()),
  secs: (v) => (v === null || v === undefined ? "" : v < 120 ? v.toFixed(1) + " s" : (v / 60).toFixed(1) + " min"),
};

function param(name) { return new URLSearchParams(location.search).get(name); }
function runUrl(page, id) { return `${page}?id=${encodeURIComponent(id)}`; }
function statusClass(status) { return "status-" + String(status || "").split(":")[0]; }

function header(id) {
  // The navigation bar; pages of one run get links to the run's other pages.
  const links = [el("a", { class: "brand", href: "/" }, "cnnlab lab"), el("a", { href: "/" }, "Runs")];
  if (id) {
    links.push(el("a", { href: runUrl("/run", id) }, "Run"), el("a", { href: runUrl("/playground", id) }, "Playground"),
      el("a", { href: runUrl("/filters", id) }, "Filters"));
  }
  document.body.prepend(el("header", {}, links));
}

const PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#57606a"];

// A line chart on a canvas: series = [{name, color, points: [[x, y], ...], dashed}]. The canvas' data-points
// attribute holds the number of points drawn, so a test (or a curious reader) can watch it grow.
function lineChart(canvas, series, { xlabel = "epoch", ylabel = "", log = false } = {}) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 52, R = 10, T = 22, B = 34;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && isFinite(p[1]) && (!log || p[1] > 0)));
  canvas.dataset.points = String(all.length);
  if (!all.length) { ctx.fillStyle = "#57606a"; ctx.fillText("no points yet", L, H / 2); return; }
  const f = log ? Math.log10 : (v) => v;
  let x0 = Math.min(...all.map((p) => p[0])), x1 = Math.max(...all.map((p) => p[0]));
  let y0 = Math.min(...all.map((p) => f(p[1]))), y1 = Math.max(...all.map((p) => f(p[1])));
  if (x1 === x0) { x0 -= 0.5; x1 += 0.5; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((f(y) - y0) / (y1 - y0)) * (H - T - B);
  ctx.strokeStyle = "#d0d7de"; ctx.fillStyle = "#57606a"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4, y = H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
    ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(W - R, y); ctx.stroke();
    const shown = log ? Math.pow(10, v) : v;
    // Enough digits that neighbouring ticks differ, even over a narrow range.
    const digits = Math.min(6, Math.max(3, 2 + Math.ceil(Math.log10(Math.abs(shown) / Math.abs((log ? shown * (Math.pow(10, (y1 - y0) / 4) - 1) : (y1 - y0) / 4)) || 1))));
    ctx.fillText(Math.abs(shown) < 0.01 && shown !== 0 ? shown.toExponential(1) : shown.toPrecision(digits), 4, y + 4);
    const xv = x0 + ((x1 - x0) * i) / 4;
    ctx.fillText(xv.toFixed(x1 - x0 < 5 ? 1 : 0), sx(xv) - 8, H - B + 14);
  }
  ctx.fillText(xlabel, W / 2 - 20, H - 4);
  ctx.fillText(ylabel + (log ? " (log)" : ""), L, 12);
  let legendX = L + ctx.measureText(ylabel + (log ? " (log)" : "")).width + 16;
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const points = s.points.filter((p) => p[1] !== null && isFinite(p[1]) && (!log || p[1] > 0));
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 1.6; ctx.setLineDash(s.dashed ? [5, 3] : []);
    ctx.beginPath();
    points.forEach((p, k) => (k ? ctx.lineTo(sx(p[0]), sy(p[1])) : ctx.moveTo(sx(p[0]), sy(p[1]))));
    ctx.stroke(); ctx.setLineDash([]);
    if (points.length < 60) points.forEach((p) => ctx.fillRect(sx(p[0]) - 2, sy(p[1]) - 2, 4, 4));
    ctx.fillText(s.name, legendX, 12); legendX += ctx.measureText(s.name).width + 16;
  });
}

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

function thumb(image, { onclick = null } = {}) {
  const wrong = image.true !== undefined && image.true !== image.predicted;
  const caption = `${image.predicted.split(" - ")[0]} ${(100 * image.probability).toFixed(0)}%` +
    (wrong ? ` (${image.true.split(" - ")[0]})` : "");
  return el("figure", { class: (wrong ? "wrong" : "") + (onclick ? " pick" : ""), title: `test #${image.index}: predicted ` +
    `${image.predicted}, true ${image.true}`, onclick }, el("img", { src: image.src, alt: `test #${image.index}` }),
  el("figcaption", {}, caption));
}

function showError(where, err) {
  where.replaceChildren(el("p", { class: "error" }, String(err.message || err)));
}
