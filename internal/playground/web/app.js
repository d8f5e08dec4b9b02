// jitbot playground page. Everything shown is rendered on the server from what jitbot sent to the Slack
// emulator; this script only polls /api/state, swaps HTML when it changed and sends actions to /api/*.
"use strict";

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const ui = {
  user: params.get("user") || "",
  view: params.get("view") || "channel:C0PLAYGENERAL",
  state: null,
  rendered: {},        // element id -> last HTML written
  openThreads: new Set(),
  modalKey: "",
  modalValues: {},     // view id -> {block_id: value}
  seen: {},            // user + nav key -> count already seen
  pending: null,       // a confirm dialog's action
  polling: false,
  repoll: false,
};

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  let res;
  try { res = await r.json(); } catch (e) { res = { ok: false, error: "HTTP " + r.status }; }
  return res;
}

function notice(text, isError) {
  const n = $("#notice");
  if (!text) { n.hidden = true; return; }
  n.textContent = text;
  n.className = isError ? "error" : "";
  n.hidden = false;
  clearTimeout(notice.t);
  notice.t = setTimeout(() => { n.hidden = true; }, 8000);
}

function setHTML(el, html) {
  if (ui.rendered[el.id] === html) return false;
  ui.rendered[el.id] = html;
  el.innerHTML = html;
  return true;
}

function syncURL() {
  const p = new URLSearchParams();
  if (ui.user) p.set("user", ui.user);
  p.set("view", ui.view);
  history.replaceState(null, "", "?" + p.toString());
}

// ---- polling and rendering ----

// poll fetches the state of the user being acted as. A poll asked for while one is in flight runs right after
// it, and an answer for a user the person has switched away from meanwhile is dropped: applying it would
// switch the page back to the previous user (a lost click).
async function poll() {
  if (ui.polling) { ui.repoll = true; return; }
  ui.polling = true;
  try {
    const asked = ui.user;
    const r = await fetch("/api/state?user=" + encodeURIComponent(asked), { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const state = await r.json();
    if (asked !== ui.user) { ui.repoll = true; return; }
    ui.state = state;
    ui.user = state.user;
    render();
  } catch (e) {
    notice("The playground does not answer (" + e.message + "). Is `jitbot dev` still running?", true);
  } finally {
    ui.polling = false;
    if (ui.repoll) { ui.repoll = false; poll(); }
  }
}

function me() {
  return (ui.state?.users || []).find((u) => u.id === ui.user) || { id: ui.user, real_name: ui.user, requests: [], approves: [] };
}

function navCount(key) {
  const s = ui.state;
  if (key === "dm") return s.dm.count;
  if (key === "deliveries") return s.deliveries.length;
  if (key.startsWith("channel:")) {
    const c = s.channels.find((c) => "channel:" + c.id === key);
    return c ? c.count : 0;
  }
  return 0;
}

function badge(btn, key) {
  const b = btn.querySelector(".badge");
  if (!b) return;
  const seenKey = ui.user + "|" + key;
  const n = navCount(key);
  if (key === ui.view || ui.seen[seenKey] === undefined) ui.seen[seenKey] = n;
  const unread = n - ui.seen[seenKey];
  b.hidden = unread <= 0;
  b.textContent = unread > 0 ? String(unread) : "";
}

function render() {
  const s = ui.state;
  // Users
  let users = "";
  for (const u of s.users) {
    const roles = [];
    if (u.requests.length) roles.push("requests " + u.requests.join(", "));
    if (u.approves.length) roles.push("approves " + u.approves.join(", "));
    users += `<button type="button" class="user${u.id === ui.user ? " active" : ""}" data-user="${esc(u.id)}" title="${esc(u.email || "")}">` +
      `<span class="u-avatar">${esc(u.real_name.slice(0, 1))}</span><span><span class="u-name">${esc(u.real_name)}</span> <span class="u-id">${esc(u.id)}</span>` +
      `<span class="u-roles">${esc(roles.join("; ") || "no roles")}</span></span></button>`;
  }
  setHTML($("#users"), users);
  // Channels
  let chans = "";
  for (const c of s.channels) {
    const key = "channel:" + c.id;
    chans += `<button type="button" class="nav${key === ui.view ? " active" : ""}" data-nav="${esc(key)}" data-channel-name="${esc(c.name)}" title="${esc(c.purpose || "")}">` +
      `<span class="nav-label"># ${esc(c.name)}</span><span class="badge" hidden></span></button>`;
  }
  setHTML($("#channels"), chans);
  for (const btn of document.querySelectorAll("[data-nav]")) {
    btn.classList.toggle("active", btn.dataset.nav === ui.view);
    badge(btn, btn.dataset.nav);
  }
  $("#policy-file").textContent = s.policy_file ? "Policy: " + s.policy_file : "";

  // Pane
  const pane = $("#pane");
  const atBottom = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
  let title = "", sub = "", html = "";
  const u = me();
  const acting = `Acting as ${u.real_name} (${u.id})`;
  if (ui.view.startsWith("channel:")) {
    const c = s.channels.find((c) => "channel:" + c.id === ui.view) || s.channels[0];
    title = "# " + c.name;
    sub = (c.purpose ? c.purpose + " · " : "") + acting;
    html = c.html;
  } else if (ui.view === "dm") {
    title = "jitbot · Messages";
    sub = "Direct messages between jitbot and " + u.real_name + " · " + acting;
    html = s.dm.html;
  } else if (ui.view === "home") {
    title = "jitbot · Home";
    sub = "The App Home tab jitbot publishes for " + u.real_name + " · " + acting;
    html = s.home ? s.home.html : `<div class="empty">jitbot has not published a Home tab for ${esc(u.real_name)} yet…</div>`;
  } else if (ui.view === "jobs") {
    title = "Pipeline jobs";
    sub = "Simulated CI jobs that request a role through jitbot's API with an ID token from a local OIDC issuer, like jitbot exec";
    html = jobsHTML(s);
  } else if (ui.view === "deliveries") {
    title = "Target system · webhook deliveries";
    sub = "Signed calls jitbot made to the local receiver standing in for the target system (newest first)";
    html = deliveriesHTML(s);
  }
  $("#pane-title").textContent = title;
  $("#pane-sub").textContent = sub;
  $("#composer-input").placeholder = ui.view.startsWith("channel:") || ui.view === "dm"
    ? "/jit request prod-db-admin 30m INC-1 why   (as " + u.real_name + ")"
    : "/jit …   (sent in #general as " + u.real_name + ")";
  if (setHTML(pane, html)) {
    for (const d of pane.querySelectorAll("details[data-thread]")) {
      if (ui.openThreads.has(d.dataset.thread)) d.open = true;
    }
    if (atBottom && ui.view !== "home" && ui.view !== "deliveries" && ui.view !== "jobs") pane.scrollTop = pane.scrollHeight;
  }
  renderModal(s.modal);
}

function jobsHTML(s) {
  const roles = s.pipeline_roles || [];
  let h = "";
  if (!roles.length) {
    h += `<div class="empty">No role of this policy can be requested by a workload of a local issuer (see issuers: and workloads: in docs/policy.md).</div>`;
  } else {
    h += `<div class="jobs-run">` + roles.map((r) => `<button type="button" class="bk-button bk-primary" data-run-job="${esc(r)}">Run a pipeline job for ${esc(r)}</button>`).join(" ") +
      `<p>The job asks for the role, waits for an approver to click Approve in the approval channel (act as an approver), works for a while with heartbeats, then releases the grant: watch the revoke arrive under Webhook deliveries.</p></div>`;
  }
  for (const j of s.jobs || []) {
    h += `<div class="job"><b>${esc(j.id)}</b> · ${esc(j.workload)} → ${esc(j.role)} · <span class="job-state">${esc(j.state)}</span><pre>${(j.lines || []).map(esc).join("\n")}</pre></div>`;
  }
  return h;
}

function deliveriesHTML(s) {
  if (!s.deliveries.length) return `<div class="empty">The target system has received nothing yet. Approved requests show up here as signed "grant" calls, and ended grants as "revoke".</div>`;
  let h = `<table class="deliveries"><thead><tr><th>Time</th><th>Type</th><th>Grant</th><th>Principal</th><th>Role</th><th>Target</th><th>Expires</th><th>Answer</th></tr></thead><tbody>`;
  for (const d of s.deliveries) {
    const target = Object.entries(d.target || {}).map(([k, v]) => k + "=" + v).join(" ");
    h += `<tr class="delivery"><td>${esc(new Date(d.at).toLocaleTimeString())}</td><td class="d-${esc(d.type)}">${esc(d.type)}</td><td>${esc(d.grant_id)}</td>` +
      `<td>${esc(d.principal)}</td><td>${esc(d.role)}</td><td>${esc(target)}</td><td>${esc(d.expires_at)}</td><td>${esc(d.status)}</td></tr>`;
  }
  h += `</tbody></table>`;
  if (s.problems && s.problems.length) {
    h += `<div class="problems"><b>Slack Web API calls the emulator refused:</b><br>${s.problems.map(esc).join("<br>")}</div>`;
  }
  return h;
}

// ---- modals ----

function saveModalValues() {
  const id = $("#modal").dataset.view;
  if (!id) return;
  const vals = {};
  for (const el of document.querySelectorAll("#modal-body [data-input]")) vals[el.dataset.blockId] = el.value;
  ui.modalValues[id] = vals;
}

function renderModal(m) {
  const back = $("#modal-backdrop");
  if (!m) {
    back.hidden = true;
    ui.modalKey = "";
    $("#modal").dataset.view = "";
    return;
  }
  if (ui.modalKey === m.key && !back.hidden) return;
  saveModalValues();
  ui.modalKey = m.key;
  const form = $("#modal");
  form.dataset.view = m.id;
  $("#modal-title").textContent = m.title;
  $("#modal-body").innerHTML = m.html;
  $("#modal-submit").textContent = m.submit || "Submit";
  $("#modal-submit").hidden = !m.submit;
  $("#modal-close").textContent = m.close || "Cancel";
  $("#modal-error").hidden = true;
  const vals = ui.modalValues[m.id] || {};
  for (const el of document.querySelectorAll("#modal-body [data-input]")) {
    if (vals[el.dataset.blockId] !== undefined) el.value = vals[el.dataset.blockId];
  }
  back.hidden = false;
  const first = document.querySelector("#modal-body [data-input]");
  if (first) first.focus();
}

function fieldError(input, text) {
  const box = input.closest(".bk-input");
  let e = box.querySelector(".bk-error");
  if (!e) { e = document.createElement("div"); e.className = "bk-error"; box.appendChild(e); }
  e.textContent = text;
  box.classList.add("bk-has-error");
}

async function submitModal(ev) {
  ev.preventDefault();
  const form = $("#modal");
  const viewID = form.dataset.view;
  const values = {};
  let missing = false;
  for (const el of document.querySelectorAll("#modal-body [data-input]")) {
    const v = el.value;
    if (el.dataset.required && !v.trim()) { fieldError(el, "Please complete this required field."); missing = true; }
    values[el.dataset.blockId] = values[el.dataset.blockId] || {};
    values[el.dataset.blockId][el.dataset.actionId] = v;
  }
  if (missing) return; // Slack's client does not submit a modal with an empty required field
  saveModalValues();
  $("#modal-submit").disabled = true;
  try {
    const res = await post("/api/submit", { user: ui.user, view_id: viewID, values });
    if (!res.ok) { $("#modal-error").textContent = res.error; $("#modal-error").hidden = false; }
    if (res.closed) delete ui.modalValues[viewID];
  } finally {
    $("#modal-submit").disabled = false;
  }
  await poll();
}

async function closeModal() {
  const viewID = $("#modal").dataset.view;
  if (!viewID) return;
  const res = await post("/api/close", { user: ui.user, view_id: viewID });
  if (!res.ok) notice(res.error, true);
  delete ui.modalValues[viewID];
  await poll();
}

// ---- actions ----

function actionTarget(el) {
  const holder = el.closest("[data-view], [data-ts]");
  if (!holder) return {};
  if (holder.dataset.view) return { view_id: holder.dataset.view };
  return { channel: holder.dataset.channel, ts: holder.dataset.ts };
}

async function sendClick(btn) {
  const body = Object.assign({ user: ui.user, action_id: btn.dataset.actionId, block_id: btn.dataset.blockId, value: btn.dataset.value || "" }, actionTarget(btn));
  btn.disabled = true;
  try {
    const res = await post("/api/click", body);
    if (!res.ok) notice(res.error, true);
  } finally {
    btn.disabled = false;
  }
  await poll();
  setTimeout(poll, 300);
}

function askConfirm(btn) {
  const c = JSON.parse(btn.dataset.confirm);
  $("#confirm-title").innerHTML = c.title;
  $("#confirm-text").innerHTML = c.text;
  $("#confirm-ok").innerHTML = c.confirm || "OK";
  $("#confirm-deny").innerHTML = c.deny || "Cancel";
  $("#confirm-ok").className = "bk-button " + (c.style === "danger" ? "bk-danger" : "bk-primary");
  ui.pending = btn;
  $("#confirm-backdrop").hidden = false;
}

async function sendCommand(ev) {
  ev.preventDefault();
  const input = $("#composer-input");
  let text = input.value.trim();
  if (!text) return;
  if (!text.startsWith("/")) text = "/jit " + text;
  let channel = "";
  if (ui.view.startsWith("channel:")) channel = ui.view.slice(8);
  else if (ui.view === "dm" && ui.state?.dm?.id) channel = ui.state.dm.id;
  else { channel = "C0PLAYGENERAL"; navigate("channel:C0PLAYGENERAL"); }
  input.value = "";
  const res = await post("/api/command", { user: ui.user, channel, text });
  if (!res.ok) { notice(res.error, true); input.value = text; }
  await poll();
  setTimeout(poll, 300);
}

function navigate(key) {
  ui.view = key;
  ui.rendered.pane = undefined;
  syncURL();
  if (key === "home") post("/api/home", { user: ui.user }).then((res) => { if (!res.ok) notice(res.error, true); poll(); });
  if (ui.state) render();
  $("#pane").scrollTop = $("#pane").scrollHeight;
}

function actAs(user) {
  saveModalValues();
  ui.user = user;
  ui.modalKey = "";
  ui.rendered = {};
  syncURL();
  if (ui.view === "home") post("/api/home", { user }).then(() => poll());
  poll();
}

document.addEventListener("click", (ev) => {
  const t = ev.target;
  const user = t.closest("[data-user]");
  if (user) { actAs(user.dataset.user); return; }
  const nav = t.closest("[data-nav]");
  if (nav) { navigate(nav.dataset.nav); return; }
  const go = t.closest("[data-goto]");
  if (go) { ev.preventDefault(); navigate("channel:" + go.dataset.goto); return; }
  const job = t.closest("[data-run-job]");
  if (job) {
    post("/api/pipeline", { role: job.dataset.runJob }).then((res) => { if (!res.ok) notice(res.error, true); poll(); });
    return;
  }
  const btn = t.closest("button[data-kind=button]");
  if (btn) {
    if (btn.dataset.confirm) askConfirm(btn); else sendClick(btn);
  }
});

document.addEventListener("change", async (ev) => {
  const sel = ev.target.closest("select[data-kind=select]");
  if (!sel || !sel.value) return;
  const res = await post("/api/select", Object.assign({ user: ui.user, action_id: sel.dataset.actionId, block_id: sel.dataset.blockId, value: sel.value }, actionTarget(sel)));
  if (!res.ok) notice(res.error, true);
  poll();
});

document.addEventListener("toggle", (ev) => {
  const d = ev.target;
  if (!d.dataset || !d.dataset.thread) return;
  if (d.open) ui.openThreads.add(d.dataset.thread); else ui.openThreads.delete(d.dataset.thread);
}, true);

$("#composer").addEventListener("submit", sendCommand);
$("#modal").addEventListener("submit", submitModal);
$("#modal-close").addEventListener("click", closeModal);
$("#modal-x").addEventListener("click", closeModal);
$("#confirm-deny").addEventListener("click", () => { $("#confirm-backdrop").hidden = true; ui.pending = null; });
$("#confirm-ok").addEventListener("click", () => {
  $("#confirm-backdrop").hidden = true;
  const btn = ui.pending;
  ui.pending = null;
  if (btn) sendClick(btn);
});

syncURL();
poll().then(() => { if (ui.view === "home") navigate("home"); });
setInterval(poll, 1000);
