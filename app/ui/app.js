// facerec console: plain JavaScript over the service's own HTTP API (no build step, no CDN).
"use strict";

const $ = (sel) => document.querySelector(sel);
const KEY = "facerec.apiKey";
const state = { role: null, thresholds: {}, identify: null, image: null, galleryOffset: 0 };
const PAGE = 20;

// -- talking to the API ------------------------------------------------------------------------
async function api(path, { method = "GET", form = null } = {}) {
  const headers = { "X-API-Key": sessionStorage.getItem(KEY) || "" };
  let response;
  try {
    response = await fetch(path, { method, headers, body: form });
  } catch (err) {
    throw new Error(`The service did not answer (${err.message}). Is it running?`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: `http_${response.status}`, message: response.statusText };
    const e = new Error(error.message);
    e.code = error.code;
    e.status = response.status;
    throw e;
  }
  return body;
}

function showError(err) {
  const box = $("#error");
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = err.code ? `${err.message} (${err.code})` : err.message;
  box.hidden = false;
}

async function guarded(fn) {
  showError(null);
  try {
    await fn();
  } catch (err) {
    showError(err);
    if (err.status === 401) signOut(false);
  }
}

// -- sign in -----------------------------------------------------------------------------------
async function signIn(key) {
  sessionStorage.setItem(KEY, key);
  const me = await api("/whoami");
  state.role = me.role;
  document.body.classList.toggle("read-only", me.role !== "admin");
  $("#who").textContent = `Signed in as ${me.name} (${me.role} key)`;
  $("#signin").hidden = true;
  $("#console").hidden = false;
  $("#signout").hidden = false;
  const report = await api("/metrics/idrate");
  state.thresholds = report.thresholds || {};
  selectTab("identify");
}

function signOut(clearError = true) {
  sessionStorage.removeItem(KEY);
  state.role = null;
  $("#console").hidden = true;
  $("#signout").hidden = true;
  $("#signin").hidden = false;
  $("#who").textContent = "";
  if (clearError) showError(null);
}

// -- tabs --------------------------------------------------------------------------------------
function selectTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll(".panel")) {
    panel.hidden = panel.id !== `tab-${name}`;
  }
  if (name === "gallery") guarded(loadGallery);
  if (name === "model") guarded(loadModel);
}

// -- identify ----------------------------------------------------------------------------------
// The threshold for an FPR, interpolated in log10(FPR) between the card's calibrated points, as the
// service does: changing the operating point re-labels the faces without sending the photo again.
function thresholdFor(fpr) {
  const points = Object.entries(state.thresholds).map(([f, t]) => [Math.log10(Number(f)), t]).sort((a, b) => a[0] - b[0]);
  const x = Math.log10(fpr);
  if (!points.length) return null;
  if (x <= points[0][0]) return points[0][1];
  for (let i = 1; i < points.length; i++) {
    if (x <= points[i][0]) {
      const [x0, y0] = points[i - 1];
      const [x1, y1] = points[i];
      return y0 + ((y1 - y0) * (x - x0)) / (x1 - x0);
    }
  }
  return points[points.length - 1][1];
}

function labelOf(face, threshold) {
  const best = face.candidates[0];
  if (best && best.similarity > threshold) return { text: `${best.name} (${best.similarity.toFixed(2)})`, known: true };
  return { text: best ? `unknown (best ${best.name} ${best.similarity.toFixed(2)})` : "unknown", known: false };
}

function drawIdentify() {
  const result = state.identify;
  const image = state.image;
  const canvas = $("#identify-canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  const fpr = Number($("#fpr").value);
  const threshold = thresholdFor(fpr) ?? result.threshold;
  const list = $("#identify-faces");
  list.replaceChildren();
  const line = Math.max(2, Math.round(image.width / 300));
  const fontSize = Math.max(14, Math.round(image.width / 40));
  result.faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    const label = labelOf(face, threshold);
    ctx.lineWidth = line;
    ctx.strokeStyle = label.known ? "#1a7f37" : "#b42318";
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${i + 1}: ${label.known ? label.text : "unknown"}`;
    ctx.font = `600 ${fontSize}px system-ui, sans-serif`;
    const w = ctx.measureText(text).width + 8;
    const top = Math.max(0, y1 - fontSize - 6);
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillRect(x1, top, w, fontSize + 6);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x1 + 4, top + fontSize);

    const item = document.createElement("li");
    item.dataset.label = label.known ? face.candidates[0].name : "unknown";
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", "false");
    toggle.innerHTML = `Face ${i + 1}: <span class="${label.known ? "match" : "unknown"}"></span>`;
    toggle.querySelector("span").textContent = label.text;
    const candidates = document.createElement("ol");
    candidates.className = "candidates";
    candidates.hidden = true;
    for (const c of face.candidates) {
      const li = document.createElement("li");
      li.textContent = `${c.name}: ${c.similarity.toFixed(3)}${c.similarity > threshold ? " (above the threshold)" : ""}`;
      candidates.append(li);
    }
    if (!face.candidates.length) candidates.append(Object.assign(document.createElement("li"), { textContent: "the gallery is empty" }));
    toggle.addEventListener("click", () => {
      candidates.hidden = !candidates.hidden;
      toggle.setAttribute("aria-expanded", String(!candidates.hidden));
    });
    item.append(toggle, candidates);
    list.append(item);
  });
  const found = result.faces.length;
  $("#identify-summary").textContent = found
    ? `${found} face${found > 1 ? "s" : ""}; threshold ${threshold.toFixed(3)} at a false-positive rate of ${fpr}. Select a face for its candidates.`
    : "No face found in this photo.";
  $("#identify-result").hidden = false;
}

async function identify() {
  const file = $("#identify-file").files[0];
  if (!file) throw new Error("Choose a photo first.");
  const form = new FormData();
  form.append("image", file);
  form.append("top_k", "5");
  form.append("fpr", $("#fpr").value);
  const [result, image] = await Promise.all([api("/identify", { method: "POST", form }), createImageBitmap(file, { imageOrientation: "from-image" })]);
  state.identify = result;
  state.image = image;
  drawIdentify();
}

// -- verify ------------------------------------------------------------------------------------
function verifyTarget() {
  const withIdentity = document.querySelector('input[name="verify-with"]:checked').value === "identity";
  $("#verify-b-label").hidden = withIdentity;
  $("#verify-identity").hidden = !withIdentity;
  $("#verify-identity-label").hidden = !withIdentity;
  return withIdentity;
}

async function verify() {
  const a = $("#verify-a").files[0];
  if (!a) throw new Error("Choose the first photo.");
  const form = new FormData();
  form.append("image_a", a);
  form.append("fpr", $("#verify-fpr").value);
  if (verifyTarget()) {
    const id = $("#verify-identity").value.trim();
    if (!id) throw new Error("Give the enrolled person's id (the Gallery tab lists them).");
    form.append("identity_id", id);
  } else {
    const b = $("#verify-b").files[0];
    if (!b) throw new Error("Choose the second photo.");
    form.append("image_b", b);
  }
  const r = await api("/verify", { method: "POST", form });
  const target = r.identity ? `${r.identity.name} (${r.faces_compared} enrolled face${r.faces_compared === 1 ? "" : "s"})` : "the second photo";
  $("#verify-verdict").textContent = r.same ? `Same person as ${target}` : `Not the same person as ${target}`;
  $("#verify-verdict").className = r.same ? "verdict same" : "verdict different";
  const notes = [`score ${r.score.toFixed(3)} against threshold ${r.threshold.toFixed(3)} at FPR ${r.fpr}`];
  if (r.faces_found_a > 1) notes.push(`the first photo has ${r.faces_found_a} faces: the clearest was compared`);
  if (r.faces_found_b > 1) notes.push(`the second photo has ${r.faces_found_b} faces: the clearest was compared`);
  $("#verify-detail").textContent = notes.join("; ") + ".";
  $("#verify-result").hidden = false;
}

// -- enrol -------------------------------------------------------------------------------------
// Photos go one at a time (the first creates the person, the others are added to them), so each
// photo's problem is shown beside it in the API's own words instead of failing the whole batch.
async function enroll() {
  const name = $("#enroll-name").value.trim();
  const files = [...$("#enroll-files").files];
  if (!name || !files.length) throw new Error("Give a name and at least one photo.");
  const report = $("#enroll-report");
  report.replaceChildren();
  let identityId = null;
  for (const file of files) {
    const item = document.createElement("li");
    const form = new FormData();
    if (identityId === null) form.append("name", name);
    else form.append("identity_id", String(identityId));
    form.append("images", file);
    try {
      const body = await api("/enroll", { method: "POST", form });
      identityId = body.identity.id;
      item.className = "ok";
      item.textContent = `${file.name}: enrolled`;
    } catch (err) {
      if (err.status === 401 || err.status === 403) throw err;
      item.className = "bad";
      item.textContent = `${file.name}: ${err.message}`;
      item.dataset.code = err.code || "";
      if (err.code === "identity_exists") {
        report.append(item);
        return;
      }
    }
    report.append(item);
  }
  $("#enroll-form").reset(); // the next person starts from an empty form
  const done = report.querySelectorAll("li.ok").length;
  const summary = document.createElement("li");
  summary.textContent = identityId === null ? `${name} was not enrolled: no photo was accepted.` : `${name}: ${done} of ${files.length} photos enrolled.`;
  report.append(summary);
}

// -- gallery -----------------------------------------------------------------------------------
async function loadGallery() {
  const search = $("#gallery-search").value.trim();
  const params = new URLSearchParams({ offset: String(state.galleryOffset), limit: String(PAGE + 1) });
  if (search) params.set("search", search);
  const rows = await api(`/identities?${params}`);
  const more = rows.length > PAGE;
  const body = $("#gallery-table tbody");
  body.replaceChildren();
  for (const person of rows.slice(0, PAGE)) {
    const tr = document.createElement("tr");
    for (const value of [person.id, person.name, person.face_count, person.created_at.slice(0, 19).replace("T", " ")]) {
      tr.append(Object.assign(document.createElement("td"), { textContent: String(value) }));
    }
    const action = document.createElement("td");
    action.className = "admin";
    const del = Object.assign(document.createElement("button"), { type: "button", textContent: "Delete", className: "secondary" });
    del.setAttribute("aria-label", `Delete ${person.name}`);
    del.addEventListener("click", () =>
      guarded(async () => {
        if (!window.confirm(`Delete ${person.name} and their ${person.face_count} faces? This cannot be undone.`)) return;
        await api(`/identities/${person.id}`, { method: "DELETE" });
        await loadGallery();
      }),
    );
    action.append(del);
    tr.append(action);
    body.append(tr);
  }
  const shown = Math.min(rows.length, PAGE);
  $("#gallery-caption").textContent = shown
    ? `People ${state.galleryOffset + 1}–${state.galleryOffset + shown}${search ? ` matching “${search}”` : ""}`
    : search ? `Nobody matches “${search}”.` : "Nobody is enrolled yet.";
  $("#gallery-page").textContent = `page ${Math.floor(state.galleryOffset / PAGE) + 1}`;
  $("#gallery-prev").disabled = state.galleryOffset === 0;
  $("#gallery-next").disabled = !more;
}

// -- model -------------------------------------------------------------------------------------
function drawCurve(card, live) {
  const canvas = $("#model-curve");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 56, B = 40, T = 16, R = 16;
  ctx.clearRect(0, 0, W, H);
  const xOf = (fpr) => L + ((Math.log10(fpr) + 4) / 3) * (W - L - R); // 1e-4 .. 1e-1
  const yOf = (tpr) => H - B - tpr * (H - B - T);
  ctx.strokeStyle = "#d5dae0";
  ctx.fillStyle = "#5a6470";
  ctx.font = "12px system-ui, sans-serif";
  for (const f of [1e-4, 1e-3, 1e-2, 1e-1]) {
    ctx.beginPath();
    ctx.moveTo(xOf(f), T);
    ctx.lineTo(xOf(f), H - B);
    ctx.stroke();
    ctx.fillText(f.toExponential(0), xOf(f) - 14, H - B + 16);
  }
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath();
    ctx.moveTo(L, yOf(t));
    ctx.lineTo(W - R, yOf(t));
    ctx.stroke();
    ctx.fillText(t.toFixed(2), 12, yOf(t) + 4);
  }
  ctx.fillText("false-positive rate", W / 2 - 50, H - 6);
  ctx.save();
  ctx.translate(14, H / 2 + 30);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText("TPR", 0, 0);
  ctx.restore();
  const series = [[card, "#0b5cad", "card"], [live, "#1a7f37", "gallery"]];
  series.forEach(([points, colour, name], k) => {
    if (!points || !points.length) return;
    ctx.strokeStyle = ctx.fillStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(xOf(p.fpr), yOf(p.tpr)) : ctx.moveTo(xOf(p.fpr), yOf(p.tpr))));
    ctx.stroke();
    for (const p of points) {
      ctx.beginPath();
      ctx.arc(xOf(p.fpr), yOf(p.tpr), 4, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.fillText(`● ${name}`, L + 10 + 90 * k, T + 14);
  });
}

async function loadModel() {
  const report = await api("/metrics/idrate");
  state.thresholds = report.thresholds || {};
  const card = report.evaluation || {};
  const lfw = card.lfw_10fold_accuracy;
  const dir = (card.dir_at_fpir || []).map((p) => `${p.tpr.toFixed(3)} at FPIR ${p.fpr}`).join(", ");
  const facts = [
    ["Model", report.model.name],
    ["Version", report.model.version],
    ["Trained on", report.model.training_data ? `${report.model.training_data.identities} identities` : "—"],
    ["LFW accuracy", lfw ? `${(100 * lfw.mean).toFixed(2)}% ± ${(100 * lfw.std).toFixed(2)}` : "—"],
    ["Open-set DIR", dir || "—"],
    ["Scoring", report.scoring.method],
    ["Live gallery", report.gallery ? `${report.gallery.faces} faces, ${report.gallery.identities_with_2_plus_faces} people with 2+ faces` : "needs two people with two faces each"],
  ];
  const dl = $("#model-facts");
  dl.replaceChildren();
  for (const [k, v] of facts) {
    dl.append(Object.assign(document.createElement("dt"), { textContent: k }), Object.assign(document.createElement("dd"), { textContent: v }));
  }
  const live = report.gallery ? report.gallery.idrate : [];
  const body = $("#model-table tbody");
  body.replaceChildren();
  for (const p of card.idrate || []) {
    const g = live.find((q) => q.fpr === p.fpr);
    const tr = document.createElement("tr");
    for (const v of [p.fpr, p.tpr.toFixed(3), (state.thresholds[String(p.fpr)] ?? p.threshold).toFixed(3), g ? g.tpr.toFixed(3) : "—"]) {
      tr.append(Object.assign(document.createElement("td"), { textContent: String(v) }));
    }
    body.append(tr);
  }
  drawCurve(card.idrate || [], live);
}

// -- wiring ------------------------------------------------------------------------------------
function dropZone(label) {
  const input = label.querySelector("input");
  label.addEventListener("dragover", (e) => {
    e.preventDefault();
    label.classList.add("over");
  });
  label.addEventListener("dragleave", () => label.classList.remove("over"));
  label.addEventListener("drop", (e) => {
    e.preventDefault();
    label.classList.remove("over");
    input.files = e.dataTransfer.files;
    input.dispatchEvent(new Event("change"));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    guarded(() => signIn($("#key").value.trim()));
  });
  $("#signout").addEventListener("click", () => signOut());
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  $("#identify-form").addEventListener("submit", (e) => {
    e.preventDefault();
    guarded(identify);
  });
  $("#fpr").addEventListener("change", () => {
    if (state.identify) drawIdentify();
  });
  $("#verify-fpr").replaceChildren(...[...$("#fpr").options].map((o) => o.cloneNode(true)));
  $("#verify-form").addEventListener("submit", (e) => {
    e.preventDefault();
    guarded(verify);
  });
  for (const radio of document.querySelectorAll('input[name="verify-with"]')) radio.addEventListener("change", verifyTarget);
  $("#enroll-form").addEventListener("submit", (e) => {
    e.preventDefault();
    guarded(enroll);
  });
  $("#gallery-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.galleryOffset = 0;
    guarded(loadGallery);
  });
  $("#gallery-prev").addEventListener("click", () => {
    state.galleryOffset = Math.max(0, state.galleryOffset - PAGE);
    guarded(loadGallery);
  });
  $("#gallery-next").addEventListener("click", () => {
    state.galleryOffset += PAGE;
    guarded(loadGallery);
  });
  document.querySelectorAll(".drop").forEach(dropZone);
  const saved = sessionStorage.getItem(KEY);
  if (saved) guarded(() => signIn(saved));
});
