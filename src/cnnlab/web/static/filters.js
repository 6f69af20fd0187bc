// Kernels of any conv layer as a grid (filter x input channel for deeper layers), chosen by layer name.
"use strict";

const runId = param("id");

function scaleLegend() {
  // The tiles' colour scale: every filter is divided by its largest |weight|, so -1..1 for all of them.
  const bar = el("canvas", { width: 96, height: 1, "aria-hidden": "true" });
  const c = bar.getContext("2d"), img = c.createImageData(96, 1);
  for (let i = 0; i < 96; i++) {
    const k = Math.round((i / 95) * 255);
    img.data.set([RDBU[k * 3], RDBU[k * 3 + 1], RDBU[k * 3 + 2], 255], i * 4);
  }
  c.putImageData(img, 0, 0);
  const text = "colour scale: -1 (the filter's most negative weight) to +1 (its largest), white is 0";
  return el("span", { class: "legend", role: "img", "aria-label": text, title: text }, el("span", {}, "−1"), bar, el("span", {}, "+1"));
}

async function show(layer) {
  const where = document.getElementById("filters");
  try {
    const f = await api(`/api/filters?id=${encodeURIComponent(runId)}` + (layer ? `&layer=${encodeURIComponent(layer)}` : ""));
    const select = document.getElementById("layer");
    if (!select.options.length) {
      select.replaceChildren(...f.layers.map((name) => el("option", { value: name }, name)));
      select.addEventListener("change", () => show(select.value));
    }
    select.value = f.layer;
    document.getElementById("shown").textContent = `weight ${f.weight_shape.join("x")}: ${f.shown}`;
    const [n, h, w] = f.tiles.shape, bytes = decodeBytes(f.tiles.data), size = h * w * (f.rgb ? 3 : 1);
    const scale = Math.max(2, Math.floor(48 / Math.max(h, w)));
    const grid = el("div", { id: "filter-grid", style: `display:grid;grid-template-columns:repeat(${f.cols}, ${w * scale}px);gap:3px` });
    for (let i = 0; i < n; i++) {
      const tile = heatCanvas(bytes.subarray(i * size, (i + 1) * size), w, h, RDBU, { rgb: f.rgb });
      tile.className = "pixelated"; tile.style.width = `${w * scale}px`; tile.style.height = `${h * scale}px`;
      tile.title = f.matrix ? `filter ${Math.floor(i / f.cols)}, input channel ${i % f.cols}` : `filter ${i}`;
      tile.setAttribute("role", "img");
      tile.setAttribute("aria-label", tile.title);
      grid.append(tile);
    }
    where.replaceChildren(grid);
  } catch (err) { showError(where, err); }
}

header(runId);
document.getElementById("filters-legend").replaceChildren(scaleLegend());
show(null);
