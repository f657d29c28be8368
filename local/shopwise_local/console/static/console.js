// The shopwise console: plain DOM, no build step. Every value from the stack is written with textContent (never as
// HTML), and every call goes to this page's own origin (/console/api/...), which signs for it with the operator's
// credentials. Actions carry X-Shopwise-Console: the console refuses any that do not.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { overview: null, shopper: null, lastList: null };

async function api(path, options = {}) {
  const headers = { "X-Shopwise-Console": "1" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/console/api/${path}`, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.message || `HTTP ${response.status}`);
  return doc;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell);
    else td.textContent = cell === undefined || cell === null ? "" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function fixed(value, digits = 4) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
}

function percent(value) {
  return typeof value === "number" && isFinite(value) ? `${(100 * value).toFixed(1)}%` : "–";
}

function day(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ") : "";
}

function say(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

// -- tabs --------------------------------------------------------------------------------------------------------

const loaders = {};

function showTab(name) {
  for (const button of document.querySelectorAll("nav button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const section of document.querySelectorAll("section.tab")) {
    section.hidden = section.id !== `tab-${name}`;
  }
  if (loaders[name]) loaders[name]();
}

// -- a shopper's list --------------------------------------------------------------------------------------------

function itemLabel(item) {
  const box = el("span");
  box.appendChild(el("span", item.title || `item ${item.item_id}`, "title"));
  box.appendChild(el("span", ` ${item.item_id}`, "muted id"));
  if (item.in_stock === false) box.appendChild(el("span", " out of stock", "warn"));
  return box;
}

function itemActions(item) {
  const box = el("span", null, "actions");
  if (state.overview && state.overview.allow_events) {
    const view = el("button", "view", "small");
    view.dataset.action = "view";
    view.addEventListener("click", () => sendEvent("product_view", item.item_id));
    const cart = el("button", "cart", "small");
    cart.dataset.action = "cart";
    cart.addEventListener("click", () => sendEvent("add_to_cart", item.item_id));
    box.append(view, cart);
  }
  const similar = el("button", "similar", "small");
  similar.dataset.action = "similar";
  similar.addEventListener("click", () => {
    $("similar-id").value = item.item_id;
    showTab("similar");
    loadSimilar();
  });
  box.appendChild(similar);
  return box;
}

function fillItems(tbody, items) {
  tbody.replaceChildren();
  items.forEach((item, index) => {
    const why = el("span", item.reason.text);
    why.title = item.reason.code;
    const tr = row([index + 1, itemLabel(item), item.category || "", fixed(item.score), why, itemActions(item)]);
    tr.dataset.item = item.item_id;
    tr.dataset.reason = item.reason.code;
    tbody.appendChild(tr);
  });
}

function renderList(list) {
  const arm = list.experiment ? `arm ${list.experiment} / ${list.variant}` : "no experiment";
  $("list-meta").textContent =
    `${list.placement || ""} list · model ${list.model_version || "none"} · ${arm} · sources ` +
    `${(list.sources || []).join(" › ") || "none"} · ${list.read_round_trips} read round trip(s)`;
  fillItems($("list").querySelector("tbody"), list.items);
}

function renderProfile(profile) {
  const body = $("profile-body");
  body.replaceChildren();
  if (!profile) {
    body.appendChild(el("p", "No profile: nothing with personalisation consent yet. The fallback chain answers.", "muted"));
    return;
  }
  const facts = [
    ["personalisation", profile.personalisation ? "granted" : "not granted"],
    ["aliases stitched", profile.aliases],
    ["orders", profile.orders],
    ["revenue", fixed(profile.revenue, 2)],
    ["market", profile.market || "–"],
    ["recently viewed", (profile.recent_viewed || []).slice(0, 8).join(", ") || "–"],
    ["in the cart", Object.keys(profile.cart || {}).join(", ") || "–"],
    ["recently bought", (profile.recent_purchased || []).slice(0, 8).join(", ") || "–"],
  ];
  const dl = el("dl");
  for (const [name, value] of facts) {
    dl.append(el("dt", name), el("dd", value));
  }
  body.appendChild(dl);
  const affinity = Object.entries(profile.category_affinity || {});
  if (affinity.length) {
    body.appendChild(el("h3", "Category affinity"));
    body.appendChild(bars(affinity.slice(0, 6), (v) => v.toFixed(2)));
  }
}

function shopperQuery() {
  const id = $("shopper-id").value.trim();
  const params = new URLSearchParams({
    id_type: $("shopper-type").value,
    placement: $("shopper-placement").value,
    n: $("shopper-n").value || "10",
  });
  return `shoppers/${encodeURIComponent(id)}?${params}`;
}

async function loadShopper() {
  say("shopper-status", "asking …");
  try {
    const doc = await api(shopperQuery());
    state.shopper = $("shopper-id").value.trim();
    state.lastList = doc.list;
    renderList(doc.list);
    renderProfile(doc.profile);
    say("shopper-status", "");
  } catch (error) {
    say("shopper-status", error.message, true);
  }
}

function signature(list) {
  return list.items.map((i) => `${i.item_id}:${i.reason.code}`).join("|");
}

async function sendEvent(kind, itemId) {
  if (!state.shopper) {
    say("shopper-status", "show a shopper's list first", true);
    return;
  }
  const before = state.lastList ? signature(state.lastList) : "";
  const started = performance.now();
  try {
    await api(`shoppers/${encodeURIComponent(state.shopper)}/events`, {
      method: "POST",
      body: { event_type: kind, item_id: itemId, id_type: $("shopper-type").value },
    });
  } catch (error) {
    say("shopper-status", error.message, true);
    return;
  }
  const label = kind === "product_view" ? "viewed" : "carted";
  say("shopper-status", `${label} ${itemId}: waiting for the stream to update the list …`);
  // watch: ask again until the list differs (the event goes collect -> stream -> updater -> feature store)
  for (let attempt = 0; attempt < 40; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    let doc;
    try {
      doc = await api(shopperQuery());
    } catch (error) {
      say("shopper-status", error.message, true);
      return;
    }
    if (signature(doc.list) !== before) {
      state.lastList = doc.list;
      renderList(doc.list);
      renderProfile(doc.profile);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      say("shopper-status", `${label} ${itemId}: the list changed after ${seconds} s`);
      return;
    }
  }
  say("shopper-status", `${label} ${itemId}: the list did not change within 20 s`);
}

// -- similar items -----------------------------------------------------------------------------------------------

async function loadSimilar() {
  const id = $("similar-id").value.trim();
  if (!id) return;
  try {
    const doc = await api(`items/${encodeURIComponent(id)}/similar?n=10`);
    const item = doc.item || {};
    $("similar-meta").textContent =
      `like ${item.title || id} (${item.category || "no category"}) · model ${doc.model_version || "none"} · ` +
      `sources ${(doc.sources || []).join(" › ")}`;
    $("similar-meta").classList.remove("error");
    fillItems($("similar").querySelector("tbody"), doc.items);
  } catch (error) {
    say("similar-meta", error.message, true);
    $("similar").querySelector("tbody").replaceChildren();
  }
}

// -- models ------------------------------------------------------------------------------------------------------

async function loadModels() {
  try {
    const doc = await api("models");
    $("models-meta").textContent = doc.models.length
      ? `serving ${doc.serving || "nothing"}; a rollback restores ${doc.previous || "nothing"}. Pick a version for its figures.`
      : "No models yet: run `shopwise retrain`.";
    const tbody = $("models").querySelector("tbody");
    tbody.replaceChildren();
    for (const m of doc.models) {
      const link = el("button", m.version, "link");
      link.addEventListener("click", () => loadModel(m.version));
      const tr = row([
        link,
        el("span", m.status, `status ${m.status}`),
        m.slot,
        day(m.trained_at),
        m.trigger,
        m.selected,
        fixed(m.validation[m.metric]),
        fixed(m.test[m.metric]),
        m.gate,
        m.reason,
      ]);
      tr.dataset.version = m.version;
      tbody.appendChild(tr);
    }
  } catch (error) {
    say("models-meta", error.message, true);
  }
}

function paramsCell(params) {
  // a hybrid's params hold each component's: its recipe in one line, the whole JSON on hover
  const full = JSON.stringify(params);
  const text = params && params.components
    ? params.components.map((c) => `${c.kind} ×${c.weight}`).join(", ")
    : full;
  const code = el("code", text.length > 140 ? `${text.slice(0, 140)}…` : text, "params");
  code.title = full;
  return code;
}

async function loadModel(version) {
  const detail = $("model-detail");
  detail.hidden = false;
  $("model-title").textContent = `${version}: each family on the test split`;
  $("model-plot").src = `/console/api/models/${encodeURIComponent(version)}/evaluation.png`;
  const tbody = $("model-families").querySelector("tbody");
  tbody.replaceChildren();
  try {
    const doc = await api(`models/${encodeURIComponent(version)}/metrics`);
    for (const [name, family] of Object.entries(doc.models || {})) {
      const test = family.test || {};
      const validation = family.validation || {};
      tbody.appendChild(
        row([
          name,
          paramsCell(family.params),
          fixed(validation[doc.metric]),
          fixed(test["ndcg@10"]),
          fixed(test["recall@20"]),
          fixed(test["hitrate@10"]),
          fixed(test["coverage@10"]),
        ]),
      );
    }
  } catch (error) {
    tbody.appendChild(row([error.message]));
  }
}

// -- drift -------------------------------------------------------------------------------------------------------

function bars(entries, format, limits) {
  // a horizontal bar per entry, scaled to the largest value (and to the thresholds when given)
  const top = Math.max(...entries.map(([, v]) => (typeof v === "number" ? v : 0)), ...(limits || []), 1e-9);
  const box = el("div", null, "bars");
  for (const [name, value] of entries) {
    const line = el("div", null, "bar-row");
    line.dataset.name = name;
    const bar = el("span", null, "fill");
    const width = typeof value === "number" ? Math.max(0, (100 * value) / top) : 0;
    bar.style.width = `${width.toFixed(1)}%`;
    if (limits && typeof value === "number") {
      bar.classList.add(value > limits[1] ? "high" : value > limits[0] ? "mid" : "low");
    }
    const track = el("span", null, "track");
    track.appendChild(bar);
    line.append(el("span", name, "bar-name"), track, el("span", typeof value === "number" ? format(value) : "–", "bar-value"));
    box.appendChild(line);
  }
  return box;
}

async function loadDrift() {
  const body = $("drift-body");
  try {
    const doc = await api("drift");
    body.replaceChildren();
    const report = doc.report;
    if (!report) {
      $("drift-meta").textContent = "No drift report yet: run `shopwise drift` (or wait for the schedule).";
      return;
    }
    const alarms = report.alarms || [];
    $("drift-meta").textContent =
      `job ${doc.job} against model ${report.model_version} · ` +
      (alarms.length ? `alarms: ${alarms.join("; ")}` : "no alarms");
    const features = Object.entries(report.features || {}).sort((a, b) => (b[1] ?? -1) - (a[1] ?? -1));
    body.appendChild(el("h2", "Population stability (PSI) per feature: above 0.1 moving, above 0.2 shifted"));
    body.appendChild(bars([...features, ["event mix", report.event_mix_psi]], (v) => v.toFixed(3), [0.1, 0.2]));
    body.appendChild(el("h2", "Newcomers"));
    body.appendChild(
      bars(
        [
          ["new items in recent interactions", report.new_item_share],
          ["unknown shoppers among recent ones", report.unknown_shopper_share],
        ],
        percent,
      ),
    );
    const serving = report.serving || {};
    if (serving.impressions) {
      body.appendChild(el("h2", "What was served"));
      body.appendChild(
        el(
          "p",
          `${serving.impressions} answers, ${percent(serving.personalised_share)} personalised, catalog coverage ` +
            `${percent(serving.coverage)}`,
        ),
      );
    }
  } catch (error) {
    say("drift-meta", error.message, true);
  }
}

// -- experiments -------------------------------------------------------------------------------------------------

async function loadExperiments() {
  const body = $("experiments-body");
  try {
    const doc = await api("experiments");
    body.replaceChildren();
    $("experiments-meta").textContent = doc.experiments.length
      ? `${doc.experiments.length} experiment(s) running`
      : "No experiments: every shopper gets the default blend (`shopwise experiments set FILE`).";
    for (const experiment of doc.experiments) {
      const card = el("div", null, "card");
      card.dataset.experiment = experiment.name;
      const arms = experiment.variants.map((v) => `${v.name} (weight ${v.weight})`).join(", ");
      card.appendChild(el("h2", experiment.name));
      card.appendChild(
        el("p", `placements ${(experiment.placements || []).join(", ")} · holdout ${percent(experiment.holdout)} · arms ${arms}`),
      );
      const button = el("button", "Read out from the event archive");
      const out = el("div");
      button.addEventListener("click", () => readOut(experiment.name, out));
      card.append(button, out);
      body.appendChild(card);
    }
  } catch (error) {
    say("experiments-meta", error.message, true);
  }
}

async function readOut(name, out) {
  out.replaceChildren(el("p", "reading the archive …", "muted"));
  try {
    const doc = await api(`experiments/${encodeURIComponent(name)}/readout`);
    out.replaceChildren();
    out.appendChild(el("p", doc.subject));
    const table = el("table", null, "readout");
    const head = document.createElement("tr");
    for (const name of ["arm", "shoppers", "impressions", "clicks", "CTR", "conversion", "revenue / session"]) {
      head.appendChild(el("th", name));
    }
    table.appendChild(head);
    for (const arm of doc.arms || []) {
      const m = arm.metrics || {};
      const value = (key) => (m[key] ? fixed(m[key].value, 4) : "–");
      table.appendChild(
        row([
          arm.name,
          arm.shoppers,
          arm.counts.impressions ?? "–",
          arm.counts.clicks ?? "–",
          value("ctr"),
          value("conversion_rate"),
          value("revenue_per_session"),
        ]),
      );
    }
    out.appendChild(table);
    if (doc.sample_ratio_mismatch) out.appendChild(el("p", "sample-ratio mismatch: the split is not what was configured", "error"));
    for (const note of doc.notes || []) out.appendChild(el("p", note, "muted"));
    const img = el("img");
    img.alt = `readout of ${name}`;
    img.src = doc.plot;
    out.appendChild(img);
  } catch (error) {
    out.replaceChildren(el("p", error.message, "error"));
  }
}

// -- start -------------------------------------------------------------------------------------------------------

async function start() {
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  loaders.models = loadModels;
  loaders.drift = loadDrift;
  loaders.experiments = loadExperiments;
  $("shopper-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadShopper();
  });
  $("event-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sendEvent($("event-type").value, $("event-item").value.trim());
  });
  $("similar-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadSimilar();
  });
  try {
    const overview = await api("overview");
    state.overview = overview;
    $("stack").textContent = `${overview.stack} · ${overview.environment}${overview.deployed ? " · deployed" : " · local"}`;
    $("serving").textContent = `serving ${overview.serving || "nothing yet"}`;
    for (const type of overview.id_types) $("shopper-type").appendChild(new Option(type, type));
    for (const placement of overview.placements) $("shopper-placement").appendChild(new Option(placement, placement));
    for (const example of overview.examples) $("shopper-examples").appendChild(new Option(example, example));
    if (overview.examples.length) $("shopper-id").placeholder = `e.g. ${overview.examples[0]}`;
    $("event-form").hidden = !overview.allow_events;
  } catch (error) {
    say("shopper-status", error.message, true);
  }
}

document.addEventListener("DOMContentLoaded", start);
