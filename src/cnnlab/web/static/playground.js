// The playground: draw (pointer events: mouse, pen and touch) or upload, and see the model's answer and insides.
"use strict";

const runId = param("id");
const canvas = document.getElementById("draw-canvas");
const ctx = canvas.getContext("2d");
let inFlight = false, pending = null, info = null;

function clearCanvas() {
  // White paper with black ink, as people draw; the server inverts it to MNIST's white-on-black.
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
}

async function send(body, query) {
  // One request at a time; a stroke finished meanwhile is sent when the answer arrives (the latest only).
  if (inFlight) { pending = [body, query]; return; }
  inFlight = true;
  const cam = document.getElementById("cam-toggle").checked ? 1 : 0;
  try {
    const result = await api(`/api/predict?id=${encodeURIComponent(runId)}&cam=${cam}${query || ""}`, {
      method: "POST", body, headers: { "Content-Type": "application/octet-stream" } });
    document.getElementById("message").textContent = "";
    show(result);
  } catch (err) {
    document.getElementById("message").textContent = String(err.message || err);
  } finally {
    inFlight = false;
    if (pending) { const next = pending; pending = null; send(...next); }
  }
}

function sendCanvas() { canvas.toBlob((blob) => send(blob, "")); }

function show(r) {
  document.getElementById("prob-bars").replaceChildren(...r.top.map((t) => el("div", { class: "bar", "data-class": t.index },
    el("span", { class: "label", title: t.class }, t.class),
    el("span", { class: "track" }, el("div", { class: "fill", style: `width:${(100 * t.probability).toFixed(1)}%` })),
    el("span", {}, fmt.pct(t.probability)))));
  document.getElementById("model-input").src = r.input;
  const steps = r.preprocessing;
  document.getElementById("steps").textContent = [steps.inverted ? "inverted" : "not inverted", steps.fit,
    steps.true ? `true class ${steps.true}` : null].filter(Boolean).join(", ");
  drawCam(r);
  document.getElementById("features").replaceChildren(...r.features.map((f) => {
    const [, channels, h, w] = f.shape, bytes = decodeBytes(f.maps.data), size = h * w;
    const maps = [];
    for (let c = 0; c < f.shown; c++) {
      const tile = heatCanvas(bytes.subarray(c * size, (c + 1) * size), w, h, VIRIDIS);
      tile.title = `${f.layer} channel ${c}`;
      maps.push(tile);
    }
    return el("div", { class: "feature-row", "data-layer": f.layer },
      el("div", { class: "note" }, `${f.layer} (${f.type}) output ${f.shape.join("x")}` +
        (f.shown < channels ? `, first ${f.shown} of ${channels} channels` : "") +
        `, range ${f.maps.min.toPrecision(3)}..${f.maps.max.toPrecision(3)}`),
      el("div", { class: "maps" }, maps));
  }));
}

function drawCam(r) {
  const where = document.getElementById("gradcam");
  if (!r.gradcam) {
    where.replaceChildren(el("p", { class: "note" }, r.captum ? "off" : 'needs captum: pip install "cnnlab[inspect]"'));
    return;
  }
  const [h, w] = r.gradcam.shape;
  const out = el("canvas", { width: 112, height: 112, class: "pixelated", id: "gradcam-overlay" });
  const octx = out.getContext("2d");
  const base = new Image();
  base.onload = () => {
    octx.imageSmoothingEnabled = false;
    octx.drawImage(base, 0, 0, 112, 112);
    const heat = heatCanvas(decodeBytes(r.gradcam.data), w, h, JET, { alpha: (v) => 0.6 * v });
    octx.imageSmoothingEnabled = true;
    octx.drawImage(heat, 0, 0, 112, 112);
  };
  base.src = r.input;
  where.replaceChildren(out, el("p", { class: "note" }, "where the predicted class' evidence lies"));
}

function stroke() {
  let last = null;
  const at = (e) => { const b = canvas.getBoundingClientRect(); return [(e.clientX - b.left) * canvas.width / b.width, (e.clientY - b.top) * canvas.height / b.height]; };
  const line = (from, to) => {
    ctx.strokeStyle = "#000"; ctx.lineWidth = Number(document.getElementById("brush").value); ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
  };
  canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); last = at(e); line(last, last); e.preventDefault(); });
  canvas.addEventListener("pointermove", (e) => { if (!last) return; const p = at(e); line(last, p); last = p; e.preventDefault(); });
  const end = () => { if (!last) return; last = null; sendCanvas(); };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

async function loadGallery() {
  const where = document.getElementById("gallery");
  try {
    const g = await api(`/api/gallery?id=${encodeURIComponent(runId)}`);
    where.replaceChildren(...g.images.map((im) => thumb(im, { onclick: () => send(null, `&index=${im.index}`) })));
  } catch (err) { showError(where, err); }
}

async function load() {
  header(runId);
  clearCanvas(); stroke();
  document.getElementById("clear").addEventListener("click", () => { clearCanvas(); });
  document.getElementById("upload").addEventListener("change", (e) => { if (e.target.files[0]) send(e.target.files[0], ""); });
  try {
    info = await api(`/api/model?id=${encodeURIComponent(runId)}`);
    document.getElementById("title").textContent = `Playground: ${info.model} on ${info.dataset}`;
    document.getElementById("how").textContent = info.drawing
      ? "Draw a digit with the mouse, a pen or a finger; it is classified after every stroke. Drawings are inverted, " +
        "then centred like MNIST: the ink's bounding box is fit into 20x20 and its centre of mass put at the centre of 28x28."
      : "Upload a picture or pick a test image; a light background is inverted and the image is fit into the square.";
    if (!info.drawing) {  // clothes or photos: a drawing is no fair input, so the gallery comes first
      document.getElementById("draw-panel").hidden = true;
    }
    document.getElementById("gallery-panel").hidden = false;
    if (!info.captum) document.getElementById("cam-toggle").disabled = true;
    loadGallery();
  } catch (err) { document.getElementById("message").textContent = String(err.message || err); }
}

load();
