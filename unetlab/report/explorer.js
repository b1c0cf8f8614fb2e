// The explorer page: reads the JSON in #explorer-data (schema: docs/explorer.md) and draws four linked views from one
// shared state (image, model, key, channel, clicked pixel). Every change redraws every view synchronously, so the
// time from a control's event to the end of drawing is measured here and exposed as window.explorer.lastRenderMs.
"use strict";

(function () {
  const explorer = { ready: false, lastRenderMs: null, renders: 0, state: null };
  window.explorer = explorer;
  const statusLine = document.getElementById("status");

  const data = JSON.parse(document.getElementById("explorer-data").textContent);
  const [H, W] = data.image_size;
  const SCALE = Math.max(1, Math.floor(256 / Math.max(H, W))); // main canvases: 64 px images at 4x
  const SMALL = Math.max(1, Math.floor(128 / Math.max(H, W))); // layer maps and label panels
  const THUMB = Math.max(1, Math.floor(80 / Math.max(H, W))); // model thumbnails
  const UNIT = data.unit || "px"; // the unit of every distance in the data (data.spacing's unit, or px)
  const D_MAX = 8; // in UNIT; distances at or beyond it are drawn red
  // Volumes: data.images holds one entry per slice (consecutive, with slice, slices and worst_slice); state.image
  // indexes those entries, the image selects choose a volume and the sliders a slice of it.
  const lowest = (img) => (img.slice_range ? img.slice_range[0] : 0);
  const firstSlice = (i) => i - ((data.images[i].slice ?? 0) - lowest(data.images[i])); // first entry of i's volume
  const openAt = (i) => firstSlice(i) + ((data.images[i].worst_slice ?? 0) - lowest(data.images[i])); // its worst
  const shownName = (img) => (img.slice === undefined ? `test image ${img.index}` : `test volume ${img.index}, slice ${img.slice}`);
  const state = { image: openAt(0), model: 0, key: null, channel: null, pixel: [H >> 1, W >> 1] };
  explorer.state = state;
  const viewKey = { fields: null, units: null }; // the key each view last showed, kept when state.key is not its own

  // ---- decoding (cached: the same label map or PNG is drawn by several views) ---------------------------------

  const labelCache = new Map();
  function labels(b64, what) {
    let out = labelCache.get(b64);
    if (out === undefined) {
      const bytes = atob(b64);
      if (bytes.length !== H * W) throw new Error(`${what}: ${bytes.length} bytes, but image_size is ${H}x${W}`);
      out = new Uint8Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) out[i] = bytes.charCodeAt(i);
      labelCache.set(b64, out);
    }
    return out;
  }

  const pictures = new Map(); // base64 PNG -> decoded <img>
  function preload(list) {
    for (const b64 of list) {
      if (!pictures.has(b64)) {
        const img = new Image();
        img.src = "data:image/png;base64," + b64;
        pictures.set(b64, img);
      }
    }
    return Promise.all([...pictures.values()].map((img) => img.decode()));
  }

  const CLASS_RGB = [
    [236, 239, 241], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
    [148, 103, 189], [140, 86, 75], [227, 119, 194], [188, 189, 34], [23, 190, 207],
  ];
  const IGNORE_RGB = [158, 158, 158];
  function classRgb(c) {
    if (c === 255) return IGNORE_RGB;
    return c < CLASS_RGB.length ? CLASS_RGB[c] : CLASS_RGB[1 + ((c - 1) % (CLASS_RGB.length - 1))];
  }
  const css = (rgb) => `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;

  function rgbaCanvas(fill) {
    const canvas = document.createElement("canvas");
    canvas.width = W;
    canvas.height = H;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(W, H);
    fill(image.data);
    ctx.putImageData(image, 0, 0);
    return canvas;
  }

  const drawnCache = new Map(); // (kind, base64) -> native-resolution canvas
  function cached(kind, b64, make) {
    const key = kind + ":" + b64;
    let canvas = drawnCache.get(key);
    if (canvas === undefined) drawnCache.set(key, (canvas = make()));
    return canvas;
  }
  function labelCanvas(b64, what) {
    return cached("labels", b64, () => {
      const lab = labels(b64, what);
      return rgbaCanvas((px) => {
        for (let i = 0; i < lab.length; i++) {
          const rgb = classRgb(lab[i]);
          px.set(rgb, 4 * i);
          px[4 * i + 3] = 255;
        }
      });
    });
  }
  function heatCanvas(b64, what) {
    // ERF: 0..255 -> transparent dark red .. opaque yellow
    return cached("heat", b64, () => {
      const heat = labels(b64, what);
      return rgbaCanvas((px) => {
        for (let i = 0; i < heat.length; i++) {
          const t = heat[i] / 255;
          px.set([255, Math.round(40 + 215 * t), Math.round(40 * t), Math.round(235 * Math.sqrt(t))], 4 * i);
        }
      });
    });
  }

  const edgeCache = new Map();
  function edgePath(b64, scale, what) {
    // the pixel edges between different labels, as 1 px lines on the inner side of each edge
    const key = scale + ":" + b64;
    let path = edgeCache.get(key);
    if (path === undefined) {
      const lab = labels(b64, what);
      path = new Path2D();
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const i = y * W + x;
          if (x + 1 < W && lab[i] !== lab[i + 1]) path.rect((x + 1) * scale - 1, y * scale, 1, scale);
          if (y + 1 < H && lab[i] !== lab[i + W]) path.rect(x * scale, (y + 1) * scale - 1, scale, 1);
        }
      }
      edgeCache.set(key, path);
    }
    return path;
  }

  // ---- small drawing and DOM helpers --------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  function canvas(width, height, cls) {
    const node = el("canvas", cls ? { class: cls } : {});
    node.width = Math.round(width);
    node.height = Math.round(height);
    const ctx = node.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    return [node, ctx];
  }
  function panel(node, ...caption) {
    return el("div", { class: "panel" }, node, el("div", { class: "caption" }, ...caption));
  }
  function empty(text) {
    return el("p", { class: "empty", "data-field": "empty" }, text);
  }
  function px(value) {
    if (value === null || value === undefined) return "n/a";
    const v = Number(value); // non-finite values arrive as the strings "Infinity" and "NaN"
    if (Number.isNaN(v)) return "n/a";
    if (!Number.isFinite(v)) return v > 0 ? `∞ ${UNIT}` : `−∞ ${UNIT}`;
    return `${v.toFixed(2)} ${UNIT}`;
  }
  function distanceColour(d) {
    if (d === null || d === undefined || Number.isNaN(Number(d))) return "#888";
    const t = Math.min(Math.max(Number(d), 0), D_MAX) / D_MAX;
    return `hsl(${Math.round((1 - t) * 120)}, 85%, ${Math.round(40 + 8 * t)}%)`;
  }
  function distanceLegend() {
    const [bar, ctx] = canvas(160, 12);
    for (let x = 0; x < 160; x++) {
      ctx.fillStyle = distanceColour((x / 159) * D_MAX);
      ctx.fillRect(x, 0, 1, 12);
    }
    return el("div", { class: "scale" }, `distance to the other boundary: 0 ${UNIT}`, bar, `≥ ${D_MAX} ${UNIT}`);
  }
  function swatch(colour, cls) {
    const node = el("span", { class: "swatch" + (cls ? " " + cls : "") });
    node.style.background = colour;
    if (cls) node.style.borderColor = colour;
    return node;
  }
  const levelOf = (key) => data.key_levels[key];
  const sizeAt = (level) => `${H / 2 ** level} × ${W / 2 ** level}`;
  const span = (lo, hi) => `${lo}–${hi}`;

  // ---- controls -----------------------------------------------------------------------------------------------

  function fillSelect(select, options, value) {
    const signature = JSON.stringify(options);
    if (select.dataset.options !== signature) {
      select.replaceChildren(...options.map(([v, text]) => el("option", { value: String(v) }, text)));
      select.dataset.options = signature;
    }
    select.value = String(value);
  }

  function effectiveKey(view, keys) {
    if (keys.includes(state.key)) viewKey[view] = state.key;
    else if (!keys.includes(viewKey[view])) viewKey[view] = keys[0];
    return viewKey[view];
  }

  function renderControls() {
    const starts = data.images.map((img, i) => i).filter((i) => firstSlice(i) === i); // one per image or volume
    const noun = data.images[0].slice === undefined ? "image" : "volume";
    const imageOptions = starts.map((i, n) => [openAt(i), `${n + 1} of ${starts.length}: test ${noun} ${data.images[i].index}`]);
    const modelOptions = data.models.map((m, i) => [i, m.label]);
    const current = data.images[state.image];
    for (const select of document.querySelectorAll('select[data-control="image"]')) {
      fillSelect(select, imageOptions, openAt(state.image));
      select.closest("label").firstChild.textContent = `test ${noun} `;
    }
    for (const slider of document.querySelectorAll('input[data-control="slice"]')) {
      const label = slider.closest("label");
      label.hidden = current.slice === undefined;
      if (label.hidden) continue;
      [slider.min, slider.max] = current.slice_range.map(String);
      slider.value = String(current.slice);
      label.querySelector('[data-field="slice"]').textContent =
        `${current.slice} of 0–${current.slices - 1}` + (current.slice === current.worst_slice ? " (errs most)" : "");
    }
    for (const select of document.querySelectorAll('select[data-control="model"]')) {
      fillSelect(select, modelOptions, state.model);
    }
    for (const [view, source] of [["fields", data.fields], ["units", data.units]]) {
      const select = document.querySelector(`[data-view="${view}"] select[data-control="key"]`);
      const names = source ? keys(source) : [];
      select.disabled = names.length === 0;
      const options = names.map((k) => [k, `${k} (level ${source.keys[k].level ?? levelOf(k)})`]);
      fillSelect(select, options, names.length ? effectiveKey(view, names) : "");
    }
    const channelSelect = document.querySelector('[data-view="units"] select[data-control="channel"]');
    const channels = data.units && keys(data.units).length ? data.units.keys[viewKey.units].channels : [];
    channelSelect.disabled = channels.length === 0;
    fillSelect(channelSelect, channels.map((c) => [c.channel, `channel ${c.channel}`]), chosenChannel(channels)?.channel ?? "");
  }
  const keys = (source) => Object.keys(source.keys);
  function chosenChannel(channels) {
    return channels.find((c) => c.channel === state.channel) ?? channels[0];
  }

  // ---- view: predictions --------------------------------------------------------------------------------------

  function drawBoundary(ctx, points, scale, hollow) {
    // truth: a ring around the pixel; prediction: a dot in its centre, so both show where they coincide
    const inner = Math.max(1, Math.round(scale / 2));
    const offset = (scale - inner) / 2;
    ctx.lineWidth = 1;
    for (const [y, x, d] of points) {
      if (hollow && scale >= 3) {
        ctx.strokeStyle = distanceColour(d);
        ctx.strokeRect(x * scale + 0.5, y * scale + 0.5, scale - 1, scale - 1);
      } else {
        ctx.fillStyle = distanceColour(d);
        if (hollow) ctx.fillRect(x * scale, y * scale, scale, scale);
        else ctx.fillRect(x * scale + offset, y * scale + offset, inner, inner);
      }
    }
  }

  function renderPredictions(body) {
    const image = data.images[state.image];
    const model = data.models[state.model];
    const prediction = model.predictions[state.image];
    const picture = pictures.get(image.png);

    const [main, ctx] = canvas(W * SCALE, H * SCALE);
    ctx.drawImage(picture, 0, 0, main.width, main.height);
    ctx.fillStyle = "rgba(0,0,0,.55)"; // a darker image lets the boundary colours stand out
    ctx.fillRect(0, 0, main.width, main.height);
    drawBoundary(ctx, prediction.truth_boundary, SCALE, true);
    drawBoundary(ctx, prediction.pred_boundary, SCALE, false);

    const labelPanel = (b64, what, caption) => {
      const [node, c] = canvas(W * SMALL, H * SMALL);
      c.drawImage(labelCanvas(b64, what), 0, 0, node.width, node.height);
      return panel(node, caption);
    };
    const numbers = el(
      "table",
      { class: "numbers" },
      el("tr", {}, el("td", {}, "HD95"), el("td", { class: "num", "data-field": "hd95" }, px(prediction.hd95))),
      el("tr", {}, el("td", {}, "ASSD"), el("td", { class: "num", "data-field": "assd" }, px(prediction.assd))),
    );
    const legend = el(
      "div",
      { class: "legend" },
      el("span", {}, swatch("#333", "hollow"), "truth boundary pixel"),
      el("span", {}, swatch("#333"), "predicted boundary pixel (centre dot)"),
    );
    const info = el(
      "div",
      { class: "panel wide" },
      el("h3", { "data-field": "model-label" }, model.label),
      el("div", { class: "note" }, "Why this image: ", el("span", { "data-field": "why" }, image.why)),
      numbers,
      distanceLegend(),
      legend,
      el("div", { class: "note" }, `run ${model.run}`),
    );
    const thumbs = el("div", { class: "thumbs" });
    data.models.forEach((m, i) => {
      const p = m.predictions[state.image];
      const [node, c] = canvas(W * THUMB, H * THUMB);
      c.drawImage(labelCanvas(p.labels, `${m.id} prediction`), 0, 0, node.width, node.height);
      c.fillStyle = "rgba(0,0,0,.75)";
      c.fill(edgePath(image.truth, THUMB, `image ${image.index} truth`));
      const button = el(
        "button",
        { class: "thumb" + (i === state.model ? " chosen" : ""), "data-control": "model", "data-value": String(i) },
        node,
        el("div", {}, m.label),
        el("div", { "data-field": "thumb-hd95" }, "HD95 " + px(p.hd95)),
      );
      thumbs.append(button);
    });
    body.replaceChildren(
      el(
        "div",
        { class: "row" },
        panel(main, el("b", {}, shownName(image)), ` with the boundaries of ${model.label}`),
        labelPanel(image.truth, `image ${image.index} truth`, "truth"),
        labelPanel(prediction.labels, `${model.id} prediction`, "prediction"),
        info,
      ),
      el("h3", { class: "spaced" }, "Every model on this image (truth boundary in black; click one to choose it)"),
      thumbs,
    );
  }

  // ---- view: layers -------------------------------------------------------------------------------------------

  function agreement(mapB64, truthB64, what) {
    const map = labels(mapB64, what);
    const truth = labels(truthB64, "truth");
    let right = 0;
    let counted = 0;
    for (let i = 0; i < truth.length; i++) {
      if (truth[i] === 255) continue;
      counted++;
      if (map[i] === truth[i]) right++;
    }
    return counted ? ((100 * right) / counted).toFixed(1) + " %" : "n/a";
  }

  function renderLayers(body) {
    const image = data.images[state.image];
    const model = data.models[state.model];
    const probeKeys = model.probe_keys || [];
    if (probeKeys.length === 0) {
      body.replaceChildren(empty(`${model.label} has no probes.`));
      return;
    }
    const levels = probeKeys.map(levelOf);
    const bottleneck = levels.indexOf(Math.max(...levels));
    const grid = el("div", { class: "ushape" });
    const cells = new Map();
    const cell = (column, row) => {
      const id = column + ":" + row;
      if (!cells.has(id)) {
        const node = el("div", {});
        node.style.gridColumn = String(column);
        node.style.gridRow = String(row);
        cells.set(id, node);
        grid.append(node);
      }
      return cells.get(id);
    };
    [["encoder ↓", 1], ["bottleneck", 2], ["decoder ↑", 3]].forEach(([text, column]) => {
      const title = el("div", { class: "side-title" }, text);
      title.style.gridColumn = String(column);
      title.style.gridRow = "1";
      grid.append(title);
    });
    const truthEdges = edgePath(image.truth, SMALL, `image ${image.index} truth`);
    probeKeys.forEach((key, k) => {
      const level = levels[k];
      const column = k < bottleneck ? 1 : k === bottleneck ? 2 : 3;
      const map = model.probes[key][state.image];
      const floors = data.floors[String(level)];
      const mapPanel = (b64, what, caption) => {
        const [node, c] = canvas(W * SMALL, H * SMALL);
        c.drawImage(labelCanvas(b64, what), 0, 0, node.width, node.height);
        c.fillStyle = "rgba(0,0,0,.8)";
        c.fill(truthEdges);
        return panel(node, caption);
      };
      const pair = el("div", { class: "pair" }, mapPanel(map, `${model.id} probe ${key}`, "probe"));
      const floorText = floors ? agreement(floors[state.image], image.truth, `floor ${level}`) : "n/a";
      if (floors) pair.append(mapPanel(floors[state.image], `floor of level ${level}`, "floor"));
      else pair.append(panel(el("div", { class: "note" }, "no floor"), "floor"));
      const layer = el(
        "div",
        { class: "layer" + (key === state.key ? " chosen" : ""), "data-key": key },
        el("h3", {}, `${key} · level ${level} (${sizeAt(level)})`),
        pair,
        el(
          "div",
          { class: "caption" },
          "pixels right: probe ",
          el("b", { "data-field": "probe-right" }, agreement(map, image.truth, `${model.id} probe ${key}`)),
          ", floor ",
          el("b", { "data-field": "floor-right" }, floorText),
        ),
      );
      layer.addEventListener("click", (event) => change(event, () => (state.key = key)));
      cell(column, level + 2).append(layer);
    });
    body.replaceChildren(
      el("p", { class: "note" }, `${model.label}, ${shownName(image)}; truth boundary in black. Click a layer to choose its key.`),
      grid,
    );
  }

  // ---- view: receptive fields ---------------------------------------------------------------------------------

  const PATH_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const pathColour = new Map();
  function colourOfPath(name) {
    if (!pathColour.has(name)) pathColour.set(name, PATH_COLOURS[pathColour.size % PATH_COLOURS.length]);
    return pathColour.get(name);
  }

  function unitBoxes(field, u, v) {
    const boxes = field.paths.map((p) => ({ name: p.name, box: [p.rows[u][0], p.rows[u][1], p.cols[v][0], p.cols[v][1]] }));
    const union = [
      Math.min(...boxes.map((b) => b.box[0])), Math.max(...boxes.map((b) => b.box[1])),
      Math.min(...boxes.map((b) => b.box[2])), Math.max(...boxes.map((b) => b.box[3])),
    ];
    return [boxes, union];
  }
  function clip([y0, y1, x0, x1]) {
    // inclusive box -> its part inside the image, or null
    const box = [Math.max(0, y0), Math.min(H - 1, y1), Math.max(0, x0), Math.min(W - 1, x1)];
    return box[0] > box[1] || box[2] > box[3] ? null : box;
  }
  function strokeBox(ctx, [y0, y1, x0, x1], scale, colour, width, dash) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.setLineDash(dash || []);
    const inset = width / 2;
    ctx.strokeRect(x0 * scale + inset, y0 * scale + inset, (x1 - x0 + 1) * scale - width, (y1 - y0 + 1) * scale - width);
    ctx.setLineDash([]);
  }

  function nearestUnit(units, [u, v]) {
    // index of the unit of ``units`` nearest to (u, v) (Euclidean, in unit coordinates; the first on ties)
    let best = 0;
    units.forEach(([eu, ev], j) => {
      const [bu, bv] = units[best];
      if ((eu - u) ** 2 + (ev - v) ** 2 < (bu - u) ** 2 + (bv - v) ** 2) best = j;
    });
    return best;
  }
  function drawCross(ctx, y, x, scale) {
    // the clicked pixel: a small cross, white under black, so that it shows on any image
    const [cx, cy] = [(x + 0.5) * scale, (y + 0.5) * scale];
    for (const [colour, width] of [["#fff", 3], ["#000", 1]]) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.beginPath();
      ctx.moveTo(cx - 5, cy);
      ctx.lineTo(cx + 5, cy);
      ctx.moveTo(cx, cy - 5);
      ctx.lineTo(cx, cy + 5);
      ctx.stroke();
    }
  }

  function renderFields(body) {
    const fields = data.fields;
    if (!fields || Object.keys(fields.keys).length === 0) {
      body.replaceChildren(empty("No viz data for this grid: the data has no receptive fields (fields is null)."));
      return;
    }
    const key = viewKey.fields;
    const field = fields.keys[key];
    const level = field.level ?? levelOf(key);
    const [y, x] = state.pixel;
    const rowsCount = field.paths[0].rows.length;
    const colsCount = field.paths[0].cols.length;
    const clickedUnit = [Math.min(Math.floor(y / 2 ** level), rowsCount - 1), Math.min(Math.floor(x / 2 ** level), colsCount - 1)];
    // The view shows one unit: where the key has effective-field maps, the one nearest the clicked pixel's unit, so
    // that its boxes, its numbers and its heat map all belong to the same unit.
    const erf = field.erf && field.erf.units.length ? field.erf : null;
    const sampled = erf ? nearestUnit(erf.units, clickedUnit) : null;
    const [u, v] = sampled === null ? clickedUnit : erf.units[sampled];
    const [boxes, union] = unitBoxes(field, u, v);
    const clipped = clip(union);
    const image = data.images[state.image];

    const [main, ctx] = canvas(W * SCALE, H * SCALE, "main");
    ctx.drawImage(pictures.get(image.png), 0, 0, main.width, main.height);
    let erfNote = "no effective-field map for this key: the chosen unit is the clicked pixel's own";
    if (erf) {
      ctx.globalAlpha = 0.75;
      ctx.drawImage(heatCanvas(erf.maps[sampled], `ERF of ${key} unit (${u}, ${v})`), 0, 0, main.width, main.height);
      ctx.globalAlpha = 1;
      const own = u === clickedUnit[0] && v === clickedUnit[1];
      erfNote = el(
        "span",
        {},
        "Heat map: the effective field of unit ",
        el("b", { "data-field": "erf-unit" }, `(${u}, ${v})`),
        " (mean |gradient| of its channel sum over the test images), the unit whose boxes are drawn: of the " +
          `${erf.units.length} units of ${key} with a stored map, `,
        own ? "the clicked pixel's own unit." : `the nearest to the clicked pixel's unit (${clickedUnit[0]}, ${clickedUnit[1]}).`,
      );
    }
    const cellSize = 2 ** level;
    strokeBox(ctx, [u * cellSize, u * cellSize + cellSize - 1, v * cellSize, v * cellSize + cellSize - 1], SCALE, "#fff", 3);
    strokeBox(ctx, [u * cellSize, u * cellSize + cellSize - 1, v * cellSize, v * cellSize + cellSize - 1], SCALE, "#000", 1);
    for (const { name, box } of boxes) {
      const inside = clip(box);
      if (inside) strokeBox(ctx, inside, SCALE, colourOfPath(name), 2);
    }
    if (clipped) {
      strokeBox(ctx, clipped, SCALE, "#fff", 2);
      strokeBox(ctx, clipped, SCALE, "#000", 2, [5, 4]);
    }
    drawCross(ctx, y, x, SCALE);
    main.addEventListener("click", (event) => {
      const rect = main.getBoundingClientRect();
      const cx = Math.floor(((event.clientX - rect.left) / rect.width) * W);
      const cy = Math.floor(((event.clientY - rect.top) / rect.height) * H);
      change(event, () => (state.pixel = [Math.min(Math.max(cy, 0), H - 1), Math.min(Math.max(cx, 0), W - 1)]));
    });

    // the whole field, unclipped, at a scale that holds the image and every unit's boxes of this key
    let [top, bottom, left, right] = [0, H - 1, 0, W - 1];
    for (const p of field.paths) {
      for (const [lo, hi] of p.rows) [top, bottom] = [Math.min(top, lo), Math.max(bottom, hi)];
      for (const [lo, hi] of p.cols) [left, right] = [Math.min(left, lo), Math.max(right, hi)];
    }
    const overviewScale = Math.min(4, 200 / Math.max(bottom - top + 1, right - left + 1));
    const [overview, octx] = canvas((right - left + 1) * overviewScale, (bottom - top + 1) * overviewScale);
    octx.fillStyle = "#eef0f3";
    octx.fillRect(0, 0, overview.width, overview.height);
    octx.save();
    octx.translate(-left * overviewScale, -top * overviewScale);
    octx.drawImage(pictures.get(image.png), 0, 0, W * overviewScale, H * overviewScale);
    strokeBox(octx, [0, H - 1, 0, W - 1], overviewScale, "#666", 1);
    for (const { name, box } of boxes) strokeBox(octx, box, overviewScale, colourOfPath(name), 2);
    strokeBox(octx, union, overviewScale, "#000", 1, [4, 3]);
    octx.restore();

    const [uh, uw] = [union[1] - union[0] + 1, union[3] - union[2] + 1];
    const numbers = el(
      "table",
      { class: "numbers" },
      el("tr", {}, el("td", {}, "clicked pixel (y, x)"), el("td", { class: "num", "data-field": "pixel" }, `(${y}, ${x})`)),
      el("tr", {}, el("td", {}, `unit of ${key} shown (u, v)`), el("td", { class: "num", "data-field": "unit" }, `(${u}, ${v})`)),
      el("tr", {}, el("td", {}, "field in the image"),
        el("td", { class: "num", "data-field": "box" }, clipped ? `${span(clipped[0], clipped[1])}, ${span(clipped[2], clipped[3])}` : "outside the image")),
      el("tr", {}, el("td", {}, "its size"),
        el("td", { class: "num", "data-field": "box-size" }, clipped ? `${clipped[1] - clipped[0] + 1} x ${clipped[3] - clipped[2] + 1} px` : "0 x 0 px")),
      el("tr", {}, el("td", {}, "whole field"),
        el("td", { class: "num", "data-field": "box-unclipped" }, `${span(union[0], union[1])}, ${span(union[2], union[3])} (${uh} x ${uw} px)`)),
    );
    const legend = el("div", { class: "legend" });
    for (const { name } of boxes) legend.append(el("span", {}, swatch(colourOfPath(name)), name));
    legend.append(
      el("span", {}, swatch("#000"), "union (dashed)"),
      el("span", {}, swatch("#fff"), "the unit's own cell"),
      el("span", {}, "+ the clicked pixel"),
    );
    const outside = uh > H || uw > W || union[0] < 0 || union[2] < 0 || union[1] >= H || union[3] >= W;
    body.replaceChildren(
      el(
        "div",
        { class: "fieldbox" },
        panel(main, el("b", {}, shownName(image)), ` · ${key} (level ${level}, one unit per ${cellSize} × ${cellSize} px) · click a pixel`),
        el(
          "div",
          { class: "panel wide" },
          el("h3", {}, `${key} of ${fields.model}`),
          numbers,
          legend,
          el("div", { class: "note" }, erfNote),
          outside ? el("div", { class: "note" }, "The field reaches outside the image: zero padding is read there.") : null,
          panel(overview, "the whole field (grey: outside the image)"),
        ),
      ),
      learnerBlock(key, keys(fields)),
    );
  }

  function learnerBlock(key, fieldKeys) {
    // data.learner: the report's table of every key's field and grid (the chosen key's row marked; click a row to
    // choose its key) beside the three paragraphs that explain it
    const learner = data.learner;
    if (!learner) return null;
    const head = el("tr", {}, ...learner.columns.map((column) => el("th", {}, column)));
    const rows = learner.rows.map((row) => {
      const cells = row.map((cell, i) => el("td", i >= 3 ? { class: "num" } : {}, cell));
      const tr = el("tr", { "data-key": row[0], class: row[0] === key ? "chosen" : "" }, ...cells);
      if (fieldKeys.includes(row[0])) tr.addEventListener("click", (event) => change(event, () => (state.key = row[0])));
      return tr;
    });
    const table = el(
      "table",
      { class: "learner-table", "data-field": "learner-table" },
      el("caption", {}, learner.title),
      el("thead", {}, head),
      el("tbody", {}, ...rows),
    );
    const texts = learner.paragraphs.map((p) => el("p", {}, el("b", {}, p.lead), " ", p.text));
    return el(
      "div",
      { class: "learner" },
      el("h3", {}, learner.heading),
      el("div", { class: "learner-body" }, table, el("div", { class: "learner-text", "data-field": "learner-text" }, ...texts)),
    );
  }

  // ---- view: top-9 patches ------------------------------------------------------------------------------------

  function renderUnits(body) {
    const units = data.units;
    if (!units || keys(units).length === 0) {
      body.replaceChildren(empty("No viz data for this grid: the data has no top-9 patches (units is null)."));
      return;
    }
    const key = viewKey.units;
    const channels = units.keys[key].channels;
    if (channels.length === 0) {
      body.replaceChildren(empty(`No channels of ${key} were drawn.`));
      return;
    }
    const channel = chosenChannel(channels);
    const grid = el("div", { class: "patches" });
    channel.patches.forEach((patch, rank) => {
      const crop = pictures.get(patch.crop);
      const cropScale = Math.min(8, 96 / Math.max(crop.naturalWidth, crop.naturalHeight));
      const [cropNode, cctx] = canvas(crop.naturalWidth * cropScale, crop.naturalHeight * cropScale);
      cctx.drawImage(crop, 0, 0, cropNode.width, cropNode.height);
      const source = pictures.get(units.images[patch.image]);
      const [sh, sw] = [source.naturalHeight, source.naturalWidth];
      const sourceScale = Math.min(4, 96 / Math.max(sh, sw));
      const [sourceNode, sctx] = canvas(sw * sourceScale, sh * sourceScale);
      sctx.drawImage(source, 0, 0, sourceNode.width, sourceNode.height);
      const [y0, y1, x0, x1] = patch.box; // half-open, unclipped
      const [cy0, cy1, cx0, cx1] = [Math.max(0, y0), Math.min(sh, y1), Math.max(0, x0), Math.min(sw, x1)];
      if (cy0 < cy1 && cx0 < cx1) {
        sctx.strokeStyle = "#ff1744";
        sctx.lineWidth = 2;
        sctx.strokeRect(cx0 * sourceScale + 1, cy0 * sourceScale + 1, (cx1 - cx0) * sourceScale - 2, (cy1 - cy0) * sourceScale - 2);
      }
      grid.append(
        el(
          "div",
          { class: "patch", "data-field": "patch" },
          el("div", { class: "pair" }, panel(cropNode, "patch"), panel(sourceNode, "where")),
          el(
            "div",
            { class: "caption" },
            `#${rank + 1} · activation `,
            el("b", { "data-field": "activation" }, Number(patch.activation).toFixed(2)),
          ),
          el(
            "div",
            { class: "caption" },
            // the test image's index in the data set, as the report's top-9 PNG gives it ("img 89")
            patch.index === undefined ? "" : el("span", { "data-field": "patch-image" }, `test image ${patch.index}`),
            patch.index === undefined ? "" : " · ",
            `unit (${patch.unit[0]}, ${patch.unit[1]}) · box ${span(y0, y1 - 1)}, ${span(x0, x1 - 1)}`,
          ),
        ),
      );
    });
    const side = Math.max(...channel.patches.map((patch) => patch.box[1] - patch.box[0]));
    const count = channel.patches.length === 9 ? "nine" : String(channel.patches.length);
    const topText =
      `These are the ${count} test images where channel ${channel.channel} of ${key} fires most ` +
      `(Zeiler and Fergus 2014), each cut to the unit's field (${side} px at ${key}). That is why a layer-1 unit ` +
      "shows nine small patches and a deep unit nine large ones: each patch is all that its unit can see.";
    body.replaceChildren(
      el("p", { class: "learner-text", "data-field": "top9-text" }, topText),
      el(
        "p",
        { class: "note" },
        `${key}, channel ${channel.channel} of ${units.model}: left, the patch (grey where the field leaves the ` +
          "image); right, the red box is where it lies in its test image.",
      ),
      grid,
    );
  }

  // ---- state changes and drawing ------------------------------------------------------------------------------

  const VIEWS = { predictions: renderPredictions, layers: renderLayers, fields: renderFields, units: renderUnits };

  function render(start) {
    renderControls();
    for (const [name, draw] of Object.entries(VIEWS)) {
      const body = document.querySelector(`[data-view="${name}"] .body`);
      try {
        draw(body);
      } catch (err) {
        body.replaceChildren(el("p", { class: "empty" }, `This view could not be drawn: ${err.message}`));
        console.error(err);
      }
    }
    explorer.renders++;
    explorer.lastRenderMs = performance.now() - start;
    document.body.dataset.renderedMs = explorer.lastRenderMs.toFixed(2);
  }

  function change(event, update) {
    // event.timeStamp is when the event was made (same clock as performance.now()): the render time counts from it
    const start = Math.min(event.timeStamp || performance.now(), performance.now());
    update();
    render(start);
  }

  function onControl(event) {
    const control = event.target.closest("[data-control]");
    if (!control || (event.type === "click" && control.tagName !== "BUTTON")) return;
    if (control.type === "range" && event.type !== "input") return; // a slider redraws as it moves (input events)
    const value = control.tagName === "BUTTON" ? control.dataset.value : control.value;
    change(event, () => {
      const what = control.dataset.control;
      if (what === "image" || what === "model") state[what] = Number(value);
      else if (what === "slice") state.image = firstSlice(state.image) + Number(value) - lowest(data.images[state.image]);
      else if (what === "key") state.key = value;
      else if (what === "channel") state.channel = Number(value);
    });
  }

  async function start() {
    const t0 = performance.now();
    try {
      const list = data.images.map((img) => img.png);
      if (data.units) {
        list.push(...data.units.images);
        for (const k of keys(data.units)) for (const c of data.units.keys[k].channels) list.push(...c.patches.map((p) => p.crop));
      }
      await preload(list);
      const keyLists = [data.fields && keys(data.fields), data.units && keys(data.units)].filter((k) => k && k.length);
      state.key = keyLists.length ? keyLists[0][0] : null;
      document.addEventListener("change", onControl);
      document.addEventListener("click", onControl);
      document.addEventListener("input", (event) => event.target.type === "range" && onControl(event));
      render(t0);
      const volumes = data.images.filter((img, i) => img.slice !== undefined && firstSlice(i) === i);
      statusLine.textContent = volumes.length
        ? `${data.models.length} models · ${volumes.length} test volume${volumes.length === 1 ? "" : "s"}, ` +
          `${volumes[0].slice_range[1] - volumes[0].slice_range[0] + 1} of ${volumes[0].slices} slices each · ` +
          `${H} × ${W} px per slice`
        : `${data.models.length} models · ${data.images.length} test images · ${H} × ${W} px`;
      statusLine.dataset.field = "summary";
      explorer.ready = true;
      document.body.dataset.ready = "true";
    } catch (err) {
      statusLine.textContent = `This page could not be drawn: ${err.message}`;
      statusLine.classList.add("error");
      throw err;
    }
  }
  start();
})();
