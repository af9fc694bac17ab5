// RVC web console: plain DOM, no framework. Every data call sends the API key the user gave
// once (kept in this tab's sessionStorage). Text from the API is only ever set with
// textContent, never parsed as HTML.
"use strict";

const KEY_ITEM = "rvc-console-api-key";
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

// fetch with the key; a refused key (401) asks for another one.
async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({}, opts.headers || {}, { Authorization: "Bearer " + apiKey() });
  const res = await fetch(path, opts);
  if (res.ok) return res;
  let detail = res.status + " " + res.statusText;
  try {
    const p = await res.json();
    if (p && p.detail) detail = p.detail + " (" + res.status + ")";
  } catch (_) { /* not problem+json */ }
  if (res.status === 401) {
    sessionStorage.removeItem(KEY_ITEM);
    askForKey("The key was refused: " + detail);
  }
  throw new ApiError(res.status, detail);
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

function showError(e) {
  if (e instanceof ApiError && e.status === 401) return; // the key prompt says why
  const p = $("#error");
  p.textContent = e instanceof ApiError && e.status === 403
    ? "This key lacks the scope for this page: " + e.message
    : "Error: " + (e && e.message ? e.message : String(e));
  p.hidden = false;
  document.body.dataset.state = "error";
}

function clearError() {
  $("#error").hidden = true;
}

function askForKey(reason) {
  $("#main").hidden = true;
  $("#keybox").hidden = false;
  const err = $("#key-error");
  err.hidden = !reason;
  err.textContent = reason || "";
  document.body.dataset.state = "key";
  $("#key-input").focus();
}

// --- formatting -------------------------------------------------------------------------

function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  const secs = Math.round((Date.now() - d.getTime()) / 1000);
  const abs = Math.abs(secs);
  let rel;
  if (abs < 60) rel = abs + " s";
  else if (abs < 3600) rel = Math.round(abs / 60) + " min";
  else if (abs < 86400) rel = Math.round(abs / 3600) + " h";
  else rel = Math.round(abs / 86400) + " d";
  const span = el("span", { title: d.toISOString() }, secs >= 0 ? rel + " ago" : "in " + rel);
  return span;
}

function ageSecs(secs) {
  if (secs === undefined || secs === null) return "–";
  if (secs < 60) return secs.toFixed(1) + " s";
  if (secs < 3600) return (secs / 60).toFixed(1) + " min";
  return (secs / 3600).toFixed(1) + " h";
}

function priceOf(minor, currency) {
  return (minor / 100).toFixed(2) + " " + currency;
}

function badge(status) {
  return el("span", { class: "badge status-" + status, dataset: { status: status } }, status.replace("_", " "));
}

// "products/{id}/{sha256}.{ext}" -> sha256
function shaOfKey(key) {
  const base = key.split("/").pop() || "";
  return base.split(".")[0];
}

// A photo through the console's image route (the key cannot go in an <img src>).
async function photo(productId, sha, alt, cls) {
  const img = el("img", { alt: alt, class: cls || "" });
  const res = await api("api/products/" + encodeURIComponent(productId) + "/images/" + encodeURIComponent(sha));
  const blob = await res.blob();
  img.src = URL.createObjectURL(blob);
  await img.decode().catch(() => {});
  return img;
}

// --- pages ------------------------------------------------------------------------------

const pages = {};

pages.products = async function () {
  let cursor = null;
  const tbody = $("#products tbody");
  async function load(reset) {
    clearError();
    document.body.dataset.state = "loading";
    if (reset) {
      cursor = null;
      tbody.replaceChildren();
    }
    const q = new URLSearchParams({ limit: "50" });
    const status = $("#status-filter").value;
    if (status) q.set("status", status);
    if (cursor) q.set("cursor", cursor);
    const page = await apiJson("/api/v1/products?" + q);
    const thumbs = [];
    for (const p of page.items) {
      const cell = el("td", { class: "thumb" });
      if (p.image_keys && p.image_keys.length) {
        thumbs.push(photo(p.id, shaOfKey(p.image_keys[0]), p.name, "thumb")
          .then((img) => cell.append(img))
          .catch(() => cell.append(el("span", { class: "muted" }, "–"))));
      }
      const link = el("a", { href: "product.html?id=" + encodeURIComponent(p.id) }, p.name);
      tbody.append(el("tr", { dataset: { productId: p.id, sku: p.sku } },
        cell,
        el("td", { class: "name" }, link),
        el("td", { class: "mono" }, p.sku),
        el("td", {}, p.category),
        el("td", { class: "num" }, priceOf(p.price_minor, p.currency)),
        el("td", {}, badge(p.status), p.archived ? el("span", { class: "badge archived" }, "archived") : null),
        el("td", { class: "num" }, p.version),
        el("td", {}, when(p.updated_at))));
    }
    cursor = page.next_cursor;
    $("#more").hidden = !cursor;
    $("#empty").hidden = tbody.children.length > 0;
    await Promise.all(thumbs);
    document.body.dataset.state = "ready";
  }
  $("#refresh").addEventListener("click", () => load(true).catch(showError));
  $("#status-filter").addEventListener("change", () => load(true).catch(showError));
  $("#more").addEventListener("click", () => load(false).catch(showError));
  await load(true);
};

pages.product = async function () {
  const id = new URLSearchParams(location.search).get("id");
  if (!id) throw new Error("no product id in the address (product.html?id=…)");
  const p = await apiJson("api/products/" + encodeURIComponent(id));
  document.title = p.name + " · RVC console";
  $("#name").textContent = p.name;
  $("#status").replaceWith(badge(p.status));
  $("#archived").hidden = !p.archived;
  const facts = $("#facts");
  for (const [k, v] of [
    ["SKU", p.sku], ["Category", p.category], ["Price", p.price + " " + p.currency],
    ["Version", p.version], ["Id", p.id], ["Created", when(p.created_at)], ["Updated", when(p.updated_at)],
  ]) {
    facts.append(el("dt", {}, k), el("dd", {}, v));
  }
  const photos = $("#photos");
  const loads = [];
  if (!p.images.length) photos.append(el("p", { class: "muted" }, "No photos."));
  for (const img of p.images) {
    const fig = el("figure", { dataset: { sha256: img.sha256 } });
    const caption = el("figcaption", {}, "#" + (img.ordinal + 1) + " · " + img.width + "×" + img.height +
      " · " + Math.round(img.size_bytes / 1024) + " KiB");
    photos.append(fig);
    if (img.object_key) {
      loads.push(photo(p.id, img.sha256, p.name + " photo " + (img.ordinal + 1), "photo")
        .then((i) => fig.prepend(i))
        .catch((e) => fig.prepend(el("div", { class: "placeholder" }, e.message))));
    } else {
      fig.append(el("div", { class: "placeholder" }, "staged: waiting for the uploader"));
    }
    fig.append(caption);
  }
  const tbody = $("#timeline tbody");
  for (const t of p.timeline) {
    const finished = t.completed_at ? when(t.completed_at)
      : t.state === "dead" ? el("span", { class: "muted" }, "given up")
      : el("span", {}, "next try ", when(t.next_attempt_at));
    const error = t.error
      ? el("span", { class: "step-error" }, el("code", {}, t.error.code), " ", t.error.message)
      : "";
    tbody.append(el("tr", { dataset: { kind: t.kind, state: t.state } },
      el("td", { class: "num" }, t.product_version),
      el("td", {}, t.kind),
      el("td", {}, badge(t.state)),
      el("td", { class: "num" }, t.attempts + " / " + t.max_attempts),
      el("td", {}, when(t.created_at)),
      el("td", {}, finished),
      el("td", {}, error)));
  }
  await Promise.all(loads);
  document.body.dataset.state = "ready";
};

pages.outbox = async function () {
  let timer = null;
  async function load() {
    clearError();
    const v = await apiJson("api/outbox");
    const counts = $("#counts tbody");
    counts.replaceChildren();
    const order = ["upload_images", "vectorize", "publish"];
    const steps = order.filter((s) => s in v.counts)
      .concat(Object.keys(v.counts).filter((s) => !order.includes(s)));
    for (const step of steps) {
      const states = v.counts[step];
      const cells = ["pending", "leased", "done", "dead"].map((s) =>
        el("td", { class: "num" + (s === "dead" && states[s] > 0 ? " alarm" : ""), dataset: { state: s } }, states[s] || 0));
      counts.append(el("tr", { dataset: { kind: step } }, el("th", {}, step), ...cells,
        el("td", { class: "num" }, ageSecs(v.oldest_claimable_secs[step]))));
    }
    $("#dead-total").textContent = "(" + v.dead_total + (v.dead_total > v.dead.length ? ", newest " + v.dead.length + " shown" : "") + ")";
    const dead = $("#dead tbody");
    dead.replaceChildren();
    for (const d of v.dead) {
      dead.append(el("tr", { dataset: { eventId: d.event_id } },
        el("td", {}, el("a", { href: "product.html?id=" + encodeURIComponent(d.product_id) }, d.name)),
        el("td", { class: "mono" }, d.sku),
        el("td", {}, d.kind),
        el("td", { class: "num" }, d.product_version),
        el("td", { class: "num" }, d.attempts + " / " + d.max_attempts),
        el("td", {}, when(d.updated_at)),
        el("td", { class: "step-error" }, el("code", {}, d.error_code), " ", d.error_message)));
    }
    $("#no-dead").hidden = v.dead.length > 0;
    document.body.dataset.state = "ready";
  }
  $("#refresh").addEventListener("click", () => load().catch(showError));
  $("#auto").addEventListener("change", (e) => {
    clearInterval(timer);
    if (e.target.checked) timer = setInterval(() => load().catch(showError), 5000);
  });
  await load();
};

const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080", "#9a6324", "#800000"];

// Draws the photo and one box per recognised object (boxes are fractions of the image).
function drawScene(canvas, image, objects) {
  // fit 800 x 560 (small photos are enlarged, at most twice)
  const maxWidth = Math.min(800, canvas.parentElement.clientWidth || 800);
  const scale = Math.min(2, maxWidth / image.naturalWidth, 560 / image.naturalHeight);
  const w = Math.round(image.naturalWidth * scale);
  const h = Math.round(image.naturalHeight * scale);
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, w, h);
  const font = Math.max(12, Math.round(w / 45));
  ctx.font = "600 " + font + "px sans-serif";
  ctx.textBaseline = "top";
  objects.forEach((o, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const x = Math.round(o.box.x * w), y = Math.round(o.box.y * h);
    const bw = Math.round(o.box.width * w), bh = Math.round(o.box.height * h);
    ctx.lineWidth = Math.max(3, Math.round(w / 200));
    ctx.strokeStyle = colour;
    ctx.strokeRect(x + ctx.lineWidth / 2, y + ctx.lineWidth / 2, bw - ctx.lineWidth, bh - ctx.lineWidth);
    const label = o.product.name + " · " + o.product.price + " " + o.product.currency;
    const pad = Math.round(font / 3);
    const tw = ctx.measureText(label).width + 2 * pad;
    const th = font + 2 * pad;
    const ly = y + th <= h ? y : Math.max(0, y - th);
    ctx.fillStyle = colour;
    ctx.fillRect(x, ly, Math.min(tw, w - x), th);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x + pad, ly + pad);
  });
  canvas.dataset.boxes = String(objects.length);
  canvas.dataset.labels = JSON.stringify(objects.map((o) => o.product.name));
}

pages.recognize = async function () {
  const form = $("#recognize-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearError();
    const file = $("#photo").files[0];
    if (!file) return;
    document.body.dataset.state = "loading";
    $("#recognize").disabled = true;
    try {
      const body = new FormData();
      body.append("image", file);
      if ($("#top-k").value) body.append("top_k", $("#top-k").value);
      if ($("#min-score").value) body.append("min_score", $("#min-score").value);
      const [result, image] = await Promise.all([
        apiJson("/api/v1/recognize", { method: "POST", body: body }),
        (async () => {
          const img = new Image();
          img.src = URL.createObjectURL(file);
          await img.decode();
          return img;
        })(),
      ]);
      drawScene($("#scene"), image, result.objects);
      const tbody = $("#objects tbody");
      tbody.replaceChildren();
      result.objects.forEach((o, i) => {
        const swatch = el("span", { class: "swatch" });
        swatch.style.background = COLOURS[i % COLOURS.length];
        const others = o.candidates.filter((c) => c.product_id !== o.product.product_id)
          .map((c) => c.sku + " " + c.score.toFixed(2)).join(", ");
        tbody.append(el("tr", { dataset: { productId: o.product.product_id } },
          el("td", {}, swatch),
          el("td", {}, el("a", { href: "product.html?id=" + encodeURIComponent(o.product.product_id) }, o.product.name)),
          el("td", { class: "mono" }, o.product.sku),
          el("td", { class: "num" }, o.product.price + " " + o.product.currency),
          el("td", { class: "num" }, o.score.toFixed(3)),
          el("td", { class: "muted" }, others || "–")));
      });
      $("#objects").hidden = result.objects.length === 0;
      $("#summary").textContent = result.objects.length
        ? result.objects.length + " product(s) recognised (model " + result.model_version + ")."
        : "No catalog product recognised in this photo (model " + result.model_version + ").";
      document.body.dataset.state = "ready";
    } catch (e) {
      showError(e);
    } finally {
      $("#recognize").disabled = false;
    }
  });
  document.body.dataset.state = "ready";
};

// --- start ------------------------------------------------------------------------------

let started = false;

function start() {
  if (started) {
    // a key refused mid-way: start the page afresh with the new one
    location.reload();
    return;
  }
  started = true;
  $("#keybox").hidden = true;
  $("#main").hidden = false;
  const page = document.body.dataset.page;
  pages[page]().catch(showError);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  const nav = document.querySelector('[data-nav="' + (page === "product" ? "products" : page) + '"]');
  if (nav) nav.classList.add("current");
  $("#key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("#key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_ITEM, key);
    $("#key-input").value = "";
    start();
  });
  $("#forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    askForKey("");
  });
  if (apiKey()) start();
  else askForKey("");
});
