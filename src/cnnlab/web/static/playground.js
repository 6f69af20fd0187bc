// The playground: draw (pointer events: mouse, pen and touch), upload or pick a test image, and see the model's
// answer and insides. Clicking a feature map (or Enter on it) asks /api/explain how one of its values came about:
// the input patch, the kernel, their products, the sum and bias, then BatchNorm, the activation and pooling.
"use strict";

const runId = param("id");
const canvas = document.getElementById("draw-canvas");
const ctx = canvas.getContext("2d");
const $ = (id) => document.getElementById(id);
let inFlight = false, pending = null, info = null;
let generation = 0;  // Clear bumps it: an answer to an older request is dropped
let lastInput = null;  // {body, query} of the shown answer: an explanation is asked for the same image
let lastResult = null;
let explainState = null;  // {layer, channel, y, x}
let explainSeq = 0;

// ---- numbers and colours ------------------------------------------------------------------------------------

function num(v) {
  if (v === null || v === undefined) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(2) : String(+v.toPrecision(4));
}

function lutColor(lut, t) {
  const i = Math.max(0, Math.min(255, Math.round(t * 255)));
  return [lut[i * 3], lut[i * 3 + 1], lut[i * 3 + 2]];
}

// Black or white text, whichever contrasts more with the cell's colour (WCAG relative luminance).
function textOn([r, g, b]) {
  const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  const L = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  return (L + 0.05) / 0.05 >= 1.05 / (L + 0.05) ? "#000" : "#fff";
}

// A colour scale: {lut, low, high}; signed values get blue-white-red symmetric around 0.
function scaleFor(values, forceSigned = false) {
  const flat = values.flat(Infinity).filter((v) => v !== null && isFinite(v));
  let low = Math.min(...flat, 0), high = Math.max(...flat, 0);
  if (!flat.length) { low = 0; high = 1; }
  const signed = forceSigned || low < 0;
  if (signed) { const m = Math.max(-low, high) || 1; return { lut: RDBU, low: -m, high: m, signed }; }
  low = Math.min(...flat); if (high <= low) high = low + 1;
  return { lut: VIRIDIS, low, high, signed };
}

function legend(scale, label) {
  const bar = el("canvas", { width: 96, height: 1, "aria-hidden": "true" });
  const c = bar.getContext("2d"), img = c.createImageData(96, 1);
  for (let i = 0; i < 96; i++) {
    const [r, g, b] = lutColor(scale.lut, i / 95);
    img.data.set([r, g, b, 255], i * 4);
  }
  c.putImageData(img, 0, 0);
  const text = `${label ? label + ": " : ""}colour scale from ${num(scale.low)} to ${num(scale.high)}` + (scale.signed ? ", white is 0" : "");
  return el("span", { class: "legend", role: "img", "aria-label": text, title: text },
    label ? el("span", {}, label) : null, el("span", { class: "legend-min" }, num(scale.low)), bar,
    el("span", { class: "legend-max" }, num(scale.high)));
}

// A grid of numbers (rows of values; null = outside the input) coloured on `scale`; big grids show colour only.
function numGrid(rows, scale, { caption = "", outside = null, mark = null } = {}) {
  const compact = rows.length > 7 || (rows[0] || []).length > 7;
  const table = el("table", { class: "numgrid" + (compact ? " compact" : "") });
  rows.forEach((row, i) => {
    const tr = el("tr");
    row.forEach((v, j) => {
      const out = v === null || (outside && outside[i][j]);
      const td = el("td", { title: out ? `padding: ${num(v === null ? 0 : v)}` : num(v) }, compact ? "" : (v === null ? "pad" : num(v)));
      if (out) td.classList.add("outside");
      else {
        const rgb = lutColor(scale.lut, (v - scale.low) / (scale.high - scale.low || 1));
        td.style.backgroundColor = `rgb(${rgb.join(",")})`;
        td.style.color = textOn(rgb);
      }
      if (mark && mark[0] === i && mark[1] === j) td.classList.add("max");
      tr.append(td);
    });
    table.append(tr);
  });
  const fig = el("figure", {}, el("div", { class: "scroll-x" }, table));
  if (caption) fig.prepend(el("figcaption", {}, caption));
  return fig;
}

// ---- predictions ----------------------------------------------------------------------------------------------

function clearCanvas() {
  // White paper with black ink, as people draw; the server inverts it to MNIST's white-on-black.
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
}

async function send(body, query) {
  // One request at a time; a stroke finished meanwhile is sent when the answer arrives (the latest only).
  if (inFlight) { pending = [body, query]; return; }
  inFlight = true;
  const asked = generation;
  const cam = $("cam-toggle").checked ? 1 : 0;
  $("result-panel").setAttribute("aria-busy", "true");
  try {
    const result = await api(`/api/predict?id=${encodeURIComponent(runId)}&cam=${cam}${query || ""}`, {
      method: "POST", body, headers: { "Content-Type": "application/octet-stream" } });
    if (asked !== generation) return;  // cleared meanwhile
    $("message").textContent = "";
    lastInput = { body, query: query || "" };
    show(result);
  } catch (err) {
    if (asked === generation) $("message").textContent = String(err.message || err);
  } finally {
    inFlight = false;
    $("result-panel").removeAttribute("aria-busy");
    if (pending) { const next = pending; pending = null; send(...next); }
  }
}

function sendCanvas() { canvas.toBlob((blob) => send(blob, "")); }

function show(r) {
  lastResult = r;
  $("prob-bars").replaceChildren(...r.top.map((t) => el("div", { class: "bar", "data-class": t.index },
    el("span", { class: "label", title: t.class }, t.class),
    el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(100 * t.probability).toFixed(1)}%` })),
    el("span", { class: "value" }, fmt.pct(t.probability)))));
  const [first, second] = r.top;
  $("announce").textContent = `Predicted ${first.class} with ${fmt.pct(first.probability)}` +
    (second ? `; next ${second.class} with ${fmt.pct(second.probability)}.` : ".");
  const seen = $("model-input");
  seen.src = r.input; seen.hidden = false;
  const steps = r.preprocessing;
  $("steps").textContent = [steps.inverted ? "inverted" : "not inverted", steps.fit,
    steps.true ? `true class ${steps.true}` : null].filter(Boolean).join(", ");
  drawCam(r);
  showFeatures(r);
  if (explainState && findRow(explainState.layer)) openExplain(explainState, false);
  else closeExplain(false);
}

function drawCam(r) {
  const where = $("gradcam"), s = r.saliency;
  $("cam-title").textContent = s && s.label ? s.label.charAt(0).toUpperCase() + s.label.slice(1) : "Grad-CAM";
  if (!s) { where.replaceChildren(el("p", { class: "note" }, "off")); return; }
  if (!s.map) { where.replaceChildren(el("p", { class: "note" }, s.note || "not available")); return; }
  const [h, w] = s.map.shape, size = 140;
  const klass = r.top[0].class;
  const out = el("canvas", { width: size, height: size, class: "pixelated", id: "gradcam-overlay", role: "img",
    "aria-label": `${s.label} for ${klass} over the input`, "data-method": s.method });
  const octx = out.getContext("2d");
  const base = new Image();
  base.onload = () => {
    octx.imageSmoothingEnabled = false;
    octx.drawImage(base, 0, 0, size, size);
    const bytes = decodeBytes(s.map.data);
    const heat = s.signed
      ? heatCanvas(bytes, w, h, RDBU, { alpha: (v) => Math.min(255, 1.6 * Math.abs(v - 127.5)) })
      : heatCanvas(bytes, w, h, JET, { alpha: (v) => 0.6 * v });
    octx.imageSmoothingEnabled = true;
    octx.drawImage(heat, 0, 0, size, size);
  };
  base.src = r.input;
  const scale = s.signed ? { lut: RDBU, low: s.map.min, high: s.map.max, signed: true } : { lut: JET, low: 0, high: s.map.max, signed: false };
  const caption = s.method === "gradcam"
    ? `where the evidence for ${klass} lies (Grad-CAM at ${s.layer})`
    : `red pixels raise the score of ${klass}, blue ones lower it`;
  where.replaceChildren(...[out, el("div", {}, legend(scale)), el("p", { class: "note", id: "cam-caption" }, caption),
    s.note ? el("p", { class: "note", id: "cam-note" }, s.note) : null].filter(Boolean));
}

// ---- feature maps -------------------------------------------------------------------------------------------

function findRow(layer) {
  if (!lastResult) return null;
  return lastResult.features.concat(lastResult.blocks || []).find((f) => f.layer === layer) || null;
}

function rowScale(f) { return { lut: f.signed ? RDBU : VIRIDIS, low: f.maps.min, high: f.maps.max, signed: f.signed }; }

function brightest(bytes, signed) {
  let best = 0, bestValue = -1;
  for (let i = 0; i < bytes.length; i++) {
    const v = signed ? Math.abs(bytes[i] - 127.5) : bytes[i];
    if (v > bestValue) { bestValue = v; best = i; }
  }
  return best;
}

function featureRow(f, block) {
  const [, channels, h, w] = f.shape, bytes = decodeBytes(f.maps.data), size = h * w;
  const tiles = [];
  f.channels.forEach((channel, i) => {
    const values = bytes.subarray(i * size, (i + 1) * size);
    const tile = heatCanvas(values, w, h, f.signed ? RDBU : VIRIDIS);
    tile.classList.add("tile");
    tile.tabIndex = 0;
    tile.setAttribute("role", "button");
    tile.setAttribute("aria-label", `${f.layer} channel ${channel}: explain a value`);
    tile.title = `${f.layer} channel ${channel}: click a point to see how its value was computed`;
    tile.dataset.layer = f.layer; tile.dataset.channel = channel;
    tile.addEventListener("click", (e) => {
      const b = tile.getBoundingClientRect();
      const x = Math.min(w - 1, Math.max(0, Math.floor(((e.clientX - b.left) / b.width) * w)));
      const y = Math.min(h - 1, Math.max(0, Math.floor(((e.clientY - b.top) / b.height) * h)));
      openExplain({ layer: f.layer, channel, y, x }, true);
    });
    tile.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" && e.key !== " ") return;
      e.preventDefault();
      const at = brightest(values, f.signed);
      openExplain({ layer: f.layer, channel, y: Math.floor(at / w), x: at % w }, true);
    });
    tiles.push(tile);
  });
  const kind = block ? (/Residual|Block/.test(f.type) ? "residual block: ReLU(branch + shortcut)" : "Inception block: its branches side by side") : f.type;
  const head = `${f.layer} (${kind}) output ${f.shape.slice(1).join("×")}` +
    (f.shown < channels ? `, ${f.shown} of ${channels} channels shown` : "") +
    `, values ${num(f.range[0])} to ${num(f.range[1])}`;
  return el("div", { class: "feature-row" + (block ? " block-row" : ""), "data-layer": f.layer },
    el("div", { class: "row-head" }, el("span", { class: "note" }, head), legend(rowScale(f))),
    el("div", { class: "maps" }, tiles));
}

function showFeatures(r) {
  const where = $("features");
  if (!r.conv_layers) {
    where.replaceChildren(el("p", { class: "note", id: "no-conv" }, `${info ? info.model : "This model"} has no conv layers: ` +
      "it flattens the image into one long vector and uses Linear layers only, so there are no feature maps to show. " +
      "Its first layer's weights are image-sized templates; the Filters page shows them."));
    return;
  }
  const rows = r.features.map((f) => featureRow(f, false));
  for (const b of r.blocks || []) {
    const index = rows.findIndex((row) => row.dataset.layer === b.after);
    rows.splice(index < 0 ? rows.length : index + 1, 0, featureRow(b, true));
  }
  parkPanel();
  where.replaceChildren(...rows);
  markSelected();
}

// The explanation panel opens right under the row of the map it explains; it waits above the rows otherwise.
function parkPanel() { $("features").before($("explain-panel")); }
function placePanel(layer) {
  const row = document.querySelector(`#features .feature-row[data-layer="${CSS.escape(layer)}"]`);
  if (row) row.after($("explain-panel")); else parkPanel();
}

function markSelected() {
  document.querySelectorAll("#features canvas.tile.selected").forEach((t) => t.classList.remove("selected"));
  if (!explainState) return;
  const tile = document.querySelector(`#features canvas.tile[data-layer="${CSS.escape(explainState.layer)}"][data-channel="${explainState.channel}"]`);
  if (tile) tile.classList.add("selected");
}

// ---- explanations -------------------------------------------------------------------------------------------

function closeExplain(focusBack = true) {
  const panel = $("explain-panel");
  const wasOpen = !panel.hidden;
  panel.hidden = true;
  $("explain-body").replaceChildren();
  $("explain-status").textContent = "";
  const state = explainState;
  explainState = null;
  markSelected();
  if (focusBack && wasOpen && state) {
    const tile = document.querySelector(`#features canvas.tile[data-layer="${CSS.escape(state.layer)}"][data-channel="${state.channel}"]`);
    if (tile) tile.focus();
  }
}

async function openExplain(state, focus) {
  if (!lastInput) return;
  explainState = state;
  markSelected();
  const panel = $("explain-panel"), seq = ++explainSeq, asked = generation;
  const wasHidden = panel.hidden;
  placePanel(state.layer);
  panel.hidden = false;
  $("explain-status").textContent = `computing ${state.layer} channel ${state.channel} at (y ${state.y}, x ${state.x})…`;
  if (focus && wasHidden) { $("explain-title").focus(); panel.scrollIntoView({ block: "nearest" }); }
  const q = `layer=${encodeURIComponent(state.layer)}&channel=${state.channel}&y=${state.y}&x=${state.x}`;
  try {
    const e = await api(`/api/explain?id=${encodeURIComponent(runId)}&${q}${lastInput.query}`, {
      method: "POST", body: lastInput.body, headers: { "Content-Type": "application/octet-stream" } });
    if (seq !== explainSeq || asked !== generation) return;
    renderExplain(e);
    $("explain-status").textContent = `${e.layer} channel ${e.channel} at (y ${e.y}, x ${e.x}): ` +
      `value ${num(e.output)}` + (e.after.length ? `, after ${e.after.map((s) => s.kind).join(" and ")} ${num(e.activation)}` : "");
  } catch (err) {
    if (seq === explainSeq) { $("explain-status").textContent = ""; showError($("explain-body"), err); }
  }
}

function picker(e) {
  // The clicked map, larger, with the chosen pixel framed: click another pixel, or move it with the arrow keys.
  const f = findRow(e.layer);
  if (!f) return null;
  const i = f.channels.indexOf(e.channel);
  if (i < 0) return null;
  const [, , h, w] = f.shape, bytes = decodeBytes(f.maps.data);
  const small = heatCanvas(bytes.subarray(i * h * w, (i + 1) * h * w), w, h, f.signed ? RDBU : VIRIDIS);
  const scale = Math.max(1, Math.floor(168 / Math.max(h, w)));
  const big = el("canvas", { width: w * scale, height: h * scale, tabindex: 0, role: "button", id: "explain-picker", class: "pick-map",
    "aria-label": `channel ${e.channel} of ${e.layer}, pixel y ${e.y}, x ${e.x} chosen: arrow keys choose another pixel`,
    title: "click a pixel, or use the arrow keys, to explain another value" });
  const c = big.getContext("2d");
  c.imageSmoothingEnabled = false;
  c.drawImage(small, 0, 0, w * scale, h * scale);
  c.lineWidth = Math.max(1, Math.floor(scale / 4)); c.strokeStyle = "#cf222e";
  c.strokeRect(e.x * scale + c.lineWidth / 2, e.y * scale + c.lineWidth / 2, scale - c.lineWidth, scale - c.lineWidth);
  big.addEventListener("click", (ev) => {
    const b = big.getBoundingClientRect();
    const x = Math.min(w - 1, Math.floor(((ev.clientX - b.left) / b.width) * w));
    const y = Math.min(h - 1, Math.floor(((ev.clientY - b.top) / b.height) * h));
    openExplain({ layer: e.layer, channel: e.channel, y, x }, false);
  });
  big.addEventListener("keydown", (ev) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[ev.key];
    if (!moves) return;
    ev.preventDefault();
    const y = Math.min(h - 1, Math.max(0, e.y + moves[0])), x = Math.min(w - 1, Math.max(0, e.x + moves[1]));
    openExplain({ layer: e.layer, channel: e.channel, y, x }, false).then(() => { const p = $("explain-picker"); if (p) p.focus(); });
  });
  return el("figure", { class: "picker" }, el("figcaption", { class: "note" }, `${e.layer}, channel ${e.channel}`), big,
    legend(rowScale(f)));
}

function equation(items) {
  // items: [label, value, id?, result?]
  return el("dl", { class: "equation" }, items.flatMap(([label, value, id, result]) => [
    el("dt", {}, label), el("dd", { id: id || null, class: result ? "result" : null, "data-value": value }, num(value))]));
}

function convPart(e, top) {
  const shownChannels = e.channels;
  const parts = [];
  const where = `rows ${e.rows[0]}–${e.rows[e.rows.length - 1]}, columns ${e.cols[0]}–${e.cols[e.cols.length - 1]}`;
  parts.push(el("p", {}, `A convolution's output value is a weighted sum: the ${e.kernel_size.join("×")} kernel of output channel ` +
    `${e.channel} (${e.input_channels} input channel${e.input_channels > 1 ? "s" : ""} × ${e.kernel_size.join("×")} weights) ` +
    `lies on the input at ${where} (stride ${e.stride.join("×")}, padding ${e.padding.join("×")}` +
    (e.dilation.some((d) => d > 1) ? `, dilation ${e.dilation.join("×")}` : "") +
    (e.groups > 1 ? `, groups ${e.groups}: input channels ${e.first_input_channel}–${e.first_input_channel + e.input_channels - 1}` : "") +
    `); each weight multiplies the input value under it, and everything is added up with the bias.` +
    (e.kernel_size[0] === 1 && e.kernel_size[1] === 1 ? " A 1×1 convolution mixes the channels of one pixel." : "")));
  if (e.outside) parts.push(el("p", { class: "note" }, "Grey cells lie outside the input: the padding, zeros."));
  if (e.note) parts.push(el("p", { class: "note explain-note" }, e.note + "."));
  if (shownChannels.length) {
    const patchScale = scaleFor(shownChannels.map((c) => c.patch));
    const kernelScale = scaleFor(shownChannels.map((c) => c.kernel), true);
    const productScale = scaleFor(shownChannels.map((c) => c.products), true);
    parts.push(el("div", { class: "calc" }, legend(patchScale, "input"), legend(kernelScale, "kernel"), legend(productScale, "products")));
    const list = el("div", { class: "channel-list" });
    const LIMIT = 4;
    shownChannels.forEach((c, k) => {
      const box = el("div", { class: "channel-calc", hidden: k >= LIMIT ? "" : null },
        el("h3", {}, `input channel ${c.in_channel}: Σ products = ${num(c.sum)}`),
        el("div", { class: "calc" },
          numGrid(c.patch, patchScale, { caption: "input patch", outside: e.outside }), el("span", { class: "op", "aria-hidden": "true" }, "×"),
          numGrid(c.kernel, kernelScale, { caption: "kernel" }), el("span", { class: "op", "aria-hidden": "true" }, "="),
          numGrid(c.products, productScale, { caption: "products" }),
          el("span", { class: "op", "aria-hidden": "true" }, "→ Σ"), el("strong", {}, num(c.sum))));
      list.append(box);
    });
    parts.push(list);
    if (shownChannels.length > LIMIT) {
      const more = el("button", { type: "button", class: "explain-more", id: top ? "explain-more" : null, "aria-expanded": "false" },
        `show all ${shownChannels.length} channels`);
      more.addEventListener("click", () => {
        const open = more.getAttribute("aria-expanded") === "true";
        list.querySelectorAll(".channel-calc").forEach((b, k) => { if (k >= LIMIT) b.hidden = open; });
        more.setAttribute("aria-expanded", String(!open));
        more.textContent = open ? `show all ${shownChannels.length} channels` : `show the first ${LIMIT} only`;
      });
      parts.push(el("p", {}, more));
    }
  }
  const items = [];
  if (e.other_channels) items.push([`Σ over the other ${e.other_channels.count} input channels`, e.other_channels.sum]);
  items.push([`sum of all products (${e.input_channels} channel${e.input_channels > 1 ? "s" : ""})`, e.sum, top ? "explain-sum" : null],
    ["+ bias", e.bias, top ? "explain-bias" : null],
    ["= the conv's output" + (e.after.length ? ` (before ${e.after.map((st) => st.kind).join(", ")})` : ""), e.output, top ? "explain-output" : null, true]);
  parts.push(equation(items));
  return parts;
}

function poolPart(e, top) {
  const what = e.op === "max" ? "the largest value in its window" : `the mean of its window (sum ÷ ${e.divisor})`;
  const parts = [el("p", {}, `A ${e.kind}'s output is ${what} of input channel ${e.channel}: rows ` +
    `${e.rows[0]}–${e.rows[e.rows.length - 1]}, columns ${e.cols[0]}–${e.cols[e.cols.length - 1]}.`)];
  if (e.window) parts.push(numGrid(e.window, scaleFor(e.window), { caption: "window", mark: e.argmax }));
  else if (e.summary) parts.push(el("p", {}, `${e.summary.count} values from ${num(e.summary.min)} to ${num(e.summary.max)}`));
  parts.push(equation([[e.op === "max" ? "max" : "mean", e.output, top ? "explain-output" : null, true]]));
  return parts;
}

function stepText(s) {
  if (s.type === "batchnorm") return `${s.kind} (${s.layer}): (${num(s.input)} − ${num(s.mean)}) ÷ √(${num(s.var)} + ${num(s.eps)}) × ${num(s.weight)} + ${num(s.bias)} = ${num(s.output)}`;
  if (s.type === "activation") return `${s.function} (${s.layer}): ${s.function}(${num(s.input)}) = ${num(s.output)}`;
  if (s.type === "identity") return `${s.kind} (${s.layer}): passes ${num(s.input)} through at test time`;
  if (s.type === "pool") {
    return `${s.kind} (${s.layer}): this pixel is in the window of pixel (y ${s.at[1]}, x ${s.at[2]}) of the pooled map; ` +
      `${s.op === "max" ? "its largest value" : `its mean (÷ ${s.divisor})`} = ${num(s.output)}`;
  }
  return `${s.kind} (${s.layer}) = ${num(s.output)}`;
}

function stepsPart(e, top) {
  if (!e.after.length) return [];
  const items = e.after.map((s) => {
    const li = el("li", {}, stepText(s));
    if (s.type === "pool" && s.window) li.append(numGrid(s.window, scaleFor(s.window), { mark: s.argmax }));
    return li;
  });
  return [el("h3", {}, "Then, what the next layers do with it"), el("ol", { class: "steps-list" }, items),
    equation([["value after these steps", e.activation, top ? "explain-activation" : null, true]])];
}

function explainPart(e, depth) {
  const top = depth === 0;
  const parts = [el("p", { class: "code" }, `${e.layer}: ${e.module}; input ${e.input_shape.join("×")} → output ${e.output_shape.join("×")}`)];
  if (e.type === "conv") parts.push(...convPart(e, top));
  else if (e.type === "pool") parts.push(...poolPart(e, top));
  else if (e.type === "batchnorm" || e.type === "activation" || e.type === "identity") {
    parts.push(el("p", {}, stepText({ ...e, kind: e.kind })), equation([["output", e.output, top ? "explain-output" : null, true]]));
  } else if (e.type === "residual") {
    const b = e.branch.explained;
    parts.push(el("p", {}, "A residual block adds its input (the shortcut) to what its convolutions made of it (the branch), then applies ReLU: out = ReLU(branch + shortcut)."),
      equation([[`branch (${b.layer}${b.after.length ? " → " + b.after.map((s) => s.layer).join(" → ") : ""})`, e.branch.value],
        [e.shortcut.type === "identity" ? "+ shortcut (the block's input, unchanged)" : `+ shortcut (${e.shortcut.explained.layer}, a 1×1 conv)`, e.shortcut.value],
        ["= sum", e.sum, top ? "explain-sum" : null],
        [`${e.activation_function}(sum) = output`, e.output, top ? "explain-output" : null, true]]),
      el("h3", {}, `How the branch's value came about: its last conv, ${b.layer}`),
      el("div", { class: "nested" }, explainPart(b, depth + 1)));
    if (e.shortcut.explained) {
      parts.push(el("details", {}, el("summary", {}, `the shortcut's 1×1 conv, ${e.shortcut.explained.layer}`),
        el("div", { class: "nested" }, explainPart(e.shortcut.explained, depth + 1))));
    }
  } else if (e.type === "concat") {
    parts.push(el("p", {}, "An Inception block runs its branches side by side on the same input and stacks their outputs along the channels:"),
      el("ul", {}, e.branches.map((b) => el("li", { class: b.branch === e.branch ? "chosen" : null },
        `${b.branch}: channels ${b.channels[0]}–${b.channels[1] - 1}` + (b.branch === e.branch ? ` ← channel ${e.channel} is its channel ${e.branch_channel}` : "")))),
      equation([["output", e.output, top ? "explain-output" : null, true]]),
      el("h3", {}, `How ${e.branch}'s channel ${e.branch_channel} came about`),
      el("div", { class: "nested" }, explainPart(e.explained, depth + 1)));
  } else if (e.type === "sequence") {
    parts.push(el("p", {}, `${e.layer} is a container; its value is made by ${e.inner}:`),
      equation([["output", e.output, top ? "explain-output" : null, true]]),
      el("div", { class: "nested" }, explainPart(e.explained, depth + 1)));
  }
  parts.push(...stepsPart(e, top));
  if (top) parts.push(el("p", { class: "note" }, `The layer's own value there, as the model computed it: ${num(e.actual)}.`));
  return parts;
}

function renderExplain(e) {
  $("explain-title").textContent = `How ${e.layer} (${e.kind}) channel ${e.channel} at (y ${e.y}, x ${e.x}) was computed`;
  const body = $("explain-body");
  body.classList.add("explain-body");
  body.dataset.layer = e.layer; body.dataset.type = e.type;
  const pick = picker(e);
  body.replaceChildren(el("div", { class: "explain-top" }, pick, el("div", { class: "explain-main" }, explainPart(e, 0))));
}

// ---- drawing, gallery, page ---------------------------------------------------------------------------------

function stroke() {
  let last = null;
  const at = (e) => { const b = canvas.getBoundingClientRect(); return [(e.clientX - b.left) * canvas.width / b.width, (e.clientY - b.top) * canvas.height / b.height]; };
  const line = (from, to) => {
    ctx.strokeStyle = "#000"; ctx.lineWidth = Number($("brush").value); ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
  };
  canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); last = at(e); line(last, last); e.preventDefault(); });
  canvas.addEventListener("pointermove", (e) => { if (!last) return; const p = at(e); line(last, p); last = p; e.preventDefault(); });
  const end = () => { if (!last) return; last = null; sendCanvas(); };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

function clearAll() {
  generation += 1; pending = null; lastInput = null; lastResult = null;
  clearCanvas();
  closeExplain(false);
  $("prob-bars").replaceChildren();
  $("announce").textContent = "Cleared: draw, upload or pick an image.";
  const seen = $("model-input"); seen.hidden = true; seen.removeAttribute("src");
  $("steps").textContent = "";
  $("gradcam").replaceChildren();
  $("cam-title").textContent = "Grad-CAM";
  parkPanel();
  $("features").replaceChildren();
  $("message").textContent = "";
  $("upload").value = "";
  document.querySelectorAll(".gallery-item[aria-pressed='true']").forEach((b) => b.setAttribute("aria-pressed", "false"));
}

function galleryItem(im) {
  const wrong = im.true !== im.predicted;
  const caption = `${im.predicted.split(" - ")[0]} ${(100 * im.probability).toFixed(0)}%` + (wrong ? ` (${im.true.split(" - ")[0]})` : "");
  // The accessible name is the visible caption and then what a sighted reader gets from the picture.
  const button = el("button", { type: "button", class: "gallery-item" + (wrong ? " wrong" : ""), "aria-pressed": "false",
    title: `test #${im.index}: predicted ${im.predicted}, true ${im.true}`, "data-index": im.index },
  el("img", { src: im.src, alt: "" }), el("span", { class: "caption" }, caption),
  el("span", { class: "sr-only" }, ` predicted; test image #${im.index}, true class ${im.true}: classify it`));
  button.addEventListener("click", () => {
    document.querySelectorAll(".gallery-item[aria-pressed='true']").forEach((b) => b.setAttribute("aria-pressed", "false"));
    button.setAttribute("aria-pressed", "true");
    clearCanvas();
    send(null, `&index=${im.index}`);
  });
  return button;
}

async function loadGallery() {
  const where = $("gallery");
  try {
    const g = await api(`/api/gallery?id=${encodeURIComponent(runId)}`);
    where.replaceChildren(...g.images.map(galleryItem));
  } catch (err) { showError(where, err); }
}

async function load() {
  header(runId);
  clearCanvas(); stroke();
  $("clear").addEventListener("click", clearAll);
  $("explain-close").addEventListener("click", () => closeExplain(true));
  $("explain-panel").addEventListener("keydown", (e) => { if (e.key === "Escape") closeExplain(true); });
  $("upload").addEventListener("change", (e) => { if (e.target.files[0]) send(e.target.files[0], ""); });
  try {
    info = await api(`/api/model?id=${encodeURIComponent(runId)}`);
    $("title").textContent = `Playground: ${info.model} on ${info.dataset}`;
    $("how").textContent = info.drawing
      ? "Draw a digit with the mouse, a pen or a finger; it is classified after every stroke. Drawings are inverted, " +
        "then centred like MNIST: the ink's bounding box is fit into 20x20 and its centre of mass put at the centre of 28x28. " +
        "From the keyboard: upload an image or pick a test image below."
      : "Upload a picture or pick a test image; a light background is inverted and the image is fit into the square.";
    if (!info.drawing) $("draw-panel").hidden = true;  // clothes or photos: a drawing is no fair input
    $("gallery-panel").hidden = false;
    if (!info.conv_layers.length) $("features-how").hidden = true;  // the note in #features says why there are none
    loadGallery();
  } catch (err) { $("message").textContent = String(err.message || err); }
}

load();
