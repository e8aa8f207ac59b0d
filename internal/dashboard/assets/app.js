// THON dashboard: live updates (Server-Sent Events) and actions through the
// REST API, signed in by the session cookie and its anti-forgery token.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf"]')?.content || "";
  const $ = (s, el = document) => el.querySelector(s);
  const $$ = (s, el = document) => Array.from(el.querySelectorAll(s));

  function toast(msg, bad) {
    const t = document.createElement("div");
    t.textContent = msg;
    if (bad) t.className = "bad";
    $("#toast").append(t);
    setTimeout(() => t.remove(), bad ? 9000 : 4000);
  }

  async function api(method, path, body) {
    const opts = { method, headers: { "X-CSRF-Token": csrf } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); throw new Error("signed out"); }
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (!r.ok) {
      const msg = data && data.error ? data.error + (data.hint ? " (" + data.hint + ")" : "") : r.status + " " + r.statusText;
      throw new Error(msg);
    }
    return data;
  }

  function dialog(title, node) {
    const d = $("#dialog");
    $("#dialog-title").textContent = title;
    const body = $("#dialog-body");
    body.replaceChildren(node);
    d.showModal();
  }

  async function run(button, fn) {
    button.disabled = true;
    try { await fn(); } catch (e) { if (e.message !== "signed out") toast(e.message, true); } finally { button.disabled = false; }
  }

  // A sandbox's state changed: update its rows where they are shown.
  function showStatus(st) {
    for (const tr of $$(`tr[data-user="${CSS.escape(st.user)}"]`)) {
      const badge = $('[data-field="state"]', tr);
      if (badge) { badge.textContent = st.state; badge.className = "badge state-" + st.state; }
      const out = $('[data-field="outdated"]', tr);
      if (out && !st.outdated) out.remove();
      const err = $('[data-field="error"]', tr);
      if (err && !st.error) err.remove();
      if (!err && st.error && badge) {
        const e = document.createElement("div");
        e.className = "err"; e.dataset.field = "error"; e.textContent = st.error;
        badge.parentElement.append(e);
      } else if (err) err.textContent = st.error;
      tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash");
    }
    if (document.body.dataset.page === "/") {
      const prev = states.get(st.user);
      if (prev !== st.state) {
        states.set(st.user, st.state);
        bump(prev, -1); bump(st.state, +1);
      }
    }
  }
  const states = new Map();
  function bump(state, d) {
    const el = state && $(`[data-count="${CSS.escape(state)}"]`);
    if (el) el.textContent = String(Math.max(0, Number(el.textContent) + d));
  }

  // The gateway's slots and queue per model (gateway and LLM pages).
  function showQueues(models) {
    const secs = v => (v || 0).toFixed(2) + " s";
    for (const tbody of $$("table[data-queues] tbody")) {
      const rows = [];
      const row = (cls, cells) => {
        const tr = document.createElement("tr");
        if (cls) tr.className = cls;
        for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
        rows.push(tr);
      };
      for (const m of models) {
        row("", [m.model, `${m.busy} of ${m.slots}` + (m.reserved ? ` (${m.reserved} for short requests)` : ""), String(m.waiting), secs(m.wait_p50_seconds), secs(m.wait_p95_seconds), String(m.timed_out)]);
        for (const g of m.groups || []) row("sub", ["group " + g.group, "", String(g.waiting), secs(g.wait_p50_seconds), secs(g.wait_p95_seconds), String(g.timed_out)]);
      }
      if (rows.length === 0) continue; // keep the explanation
      tbody.replaceChildren(...rows);
    }
  }

  // Live updates; EventSource reconnects by itself, and a daemon that
  // restarted meanwhile (a new start time) means everything is reloaded.
  let started = sessionStorage.getItem("thon-started");
  let reloadTimer = 0;
  function reloadSoon() { clearTimeout(reloadTimer); reloadTimer = setTimeout(() => location.reload(), 400); }
  function connect() {
    if (!csrf || !window.EventSource) return;
    const live = $("#live");
    const es = new EventSource("/api/v1/stream");
    let lost = false;
    es.addEventListener("hello", ev => {
      const h = JSON.parse(ev.data);
      live.textContent = "live"; live.classList.add("on");
      // Back after a restart, or after a break in which changes may have
      // been missed: draw the page afresh.
      if ((started && started !== h.started) || lost) { sessionStorage.setItem("thon-started", h.started); location.reload(); return; }
      started = h.started; sessionStorage.setItem("thon-started", h.started);
    });
    es.addEventListener("sandbox", ev => showStatus(JSON.parse(ev.data)));
    es.addEventListener("reload", () => { if (["/instances", "/groups", "/"].includes(document.body.dataset.page)) reloadSoon(); });
    es.addEventListener("event", ev => {
      const e = JSON.parse(ev.data);
      const list = $("#events");
      if (list) {
        const li = document.createElement("li");
        const t = document.createElement("time"); t.textContent = new Date(e.time).toLocaleTimeString();
        const a = document.createElement("strong"); a.textContent = e.action;
        const rest = document.createElement("span"); rest.className = "muted"; rest.textContent = ` ${e.detail || ""} · ${e.actor}`;
        li.append(t, " ", a, " " + (e.target || "") + " ", rest);
        list.prepend(li);
        while (list.children.length > 15) list.lastElementChild.remove();
      }
    });
    es.addEventListener("queue", ev => showQueues(JSON.parse(ev.data)));
    es.addEventListener("usage", ev => {
      const u = JSON.parse(ev.data);
      for (const [id, v] of [["#usage-req", u.requests], ["#usage-tok", u.tokens], ["#usage-429", u.rejections]]) { const el = $(id); if (el) el.textContent = String(v); }
    });
    es.onerror = () => { lost = true; live.textContent = "reconnecting…"; live.classList.remove("on"); };
  }

  // Instances: selection and bulk actions.
  function selected() { return $$(".sel:checked").map(c => c.value); }
  function updateSelection() {
    const n = selected().length;
    const s = $("#selected"); if (s) s.textContent = n + " selected";
    for (const b of $$("[data-bulk]")) b.disabled = n === 0;
  }

  function confirmRemove(what) { return confirm(`Remove ${what}? Their workspace is kept (delete it with thon cleanup --volumes).`); }

  async function showLink(user, open) {
    const l = await api("POST", `/api/v1/users/${encodeURIComponent(user)}/access`);
    if (open) { window.open(l.link, "_blank", "noopener"); return; }
    const box = document.createElement("div");
    const p = document.createElement("p"); p.textContent = "One use, until " + new Date(l.expires).toLocaleString() + ":";
    const code = document.createElement("code"); code.className = "wrap"; code.textContent = l.link;
    const copy = document.createElement("button"); copy.type = "button"; copy.className = "small"; copy.textContent = "copy";
    copy.addEventListener("click", () => navigator.clipboard?.writeText(l.link).then(() => toast("Copied")));
    box.append(p, code, " ", copy);
    const form = new FormData(); form.set("text", l.link); form.set("csrf", csrf);
    const r = await fetch("/qr", { method: "POST", body: form, headers: { "X-CSRF-Token": csrf } });
    if (r.ok) {
      const img = document.createElement("img");
      img.alt = "QR code of " + user + "'s personal link"; img.width = 240; img.height = 240;
      img.src = URL.createObjectURL(await r.blob());
      box.append(img);
    }
    dialog("Personal link of " + user, box);
  }

  async function showLogs(user) {
    const r = await fetch(`/api/v1/sandboxes/${encodeURIComponent(user)}/logs?tail=300`, { headers: { "X-CSRF-Token": csrf } });
    const text = await r.text();
    const pre = document.createElement("pre");
    pre.textContent = r.ok ? (text || "(no output yet)") : text;
    dialog("Logs of " + user, pre);
  }

  async function pull(model) {
    const out = $("#pull-progress");
    const r = await fetch("/api/v1/llm/pull", { method: "POST", headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" }, body: JSON.stringify({ model }) });
    if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error(e.error || r.statusText); }
    const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = JSON.parse(buf.slice(0, i)); buf = buf.slice(i + 1);
        if (line.error) throw new Error(line.error);
        if (line.done) { toast("Downloaded " + model); reloadSoon(); return; }
        if (line.progress && out) out.textContent = `${line.model}: ${Math.round(line.progress.percent)}%`;
      }
    }
  }

  document.addEventListener("click", ev => {
    const b = ev.target.closest("button");
    if (!b) return;
    const d = b.dataset;
    if (d.action) {
      if (d.action === "remove" && !confirmRemove(d.user)) return;
      run(b, async () => {
        const path = d.action === "remove" ? `/api/v1/sandboxes/${encodeURIComponent(d.user)}` : `/api/v1/sandboxes/${encodeURIComponent(d.user)}/${d.action}`;
        const res = await api(d.action === "remove" ? "DELETE" : "POST", path);
        if (res && res.outcome === "failed") throw new Error(`${d.user}: ${res.error}`);
        toast(`${d.user}: ${d.action} done`);
      });
    } else if (d.bulk) {
      const users = selected();
      if (d.bulk === "remove" && !confirmRemove(users.length + " participants' sandboxes")) return;
      run(b, async () => {
        const sum = await api("POST", "/api/v1/sandboxes/bulk", { action: d.bulk, users });
        toast(`${d.bulk}: ${sum.succeeded ?? 0} done, ${sum.failed ?? 0} failed, ${sum.unchanged ?? 0} unchanged`, (sum.failed ?? 0) > 0);
      });
    } else if (d.groupBulk) {
      run(b, async () => {
        const sum = await api("POST", "/api/v1/sandboxes/bulk", { action: d.groupBulk, groups: [d.group] });
        toast(`${d.group}: ${d.groupBulk} ${sum.succeeded ?? 0} done, ${sum.failed ?? 0} failed`, (sum.failed ?? 0) > 0);
      });
    } else if (d.logs) run(b, () => showLogs(d.logs));
    else if (d.link) run(b, () => showLink(d.link, false));
    else if (d.open) run(b, () => showLink(d.open, true));
    else if (d.rename) {
      const name = prompt(`New name for ${d.rename}:`, d.rename);
      if (!name || name === d.rename) return;
      run(b, async () => { await api("POST", `/api/v1/groups/${encodeURIComponent(d.rename)}/rename`, { name }); reloadSoon(); });
    } else if (d.deleteGroup) {
      if (!confirm(`Delete the empty group ${d.deleteGroup}?`)) return;
      run(b, async () => { await api("DELETE", `/api/v1/groups/${encodeURIComponent(d.deleteGroup)}`); reloadSoon(); });
    } else if (d.removeUser) {
      if (!confirm(`Remove ${d.removeUser} from the event? Their sandbox goes; their workspace is kept.`)) return;
      run(b, async () => { await api("DELETE", `/api/v1/users/${encodeURIComponent(d.removeUser)}`); reloadSoon(); });
    } else if (d.rotate) {
      if (!confirm(`Rotate ${d.rotate}? The old key stops working at once.`)) return;
      run(b, async () => {
        const k = await api("POST", `/api/v1/gateway/keys/${encodeURIComponent(d.rotate)}/rotate`);
        const box = document.createElement("div");
        const p = document.createElement("p"); p.textContent = "Shown this once. Sandboxes get it when recreated.";
        const code = document.createElement("code"); code.className = "wrap"; code.id = "new-key"; code.textContent = k.key;
        box.append(p, code);
        dialog("New key for " + k.id, box);
      });
    } else if (d.invite) {
      const uses = prompt(`How many people may join ${d.invite} with this link?`, "30");
      if (!uses) return;
      const hours = prompt("For how many hours?", "48");
      if (!hours) return;
      run(b, async () => {
        const inv = await api("POST", "/api/v1/invites", { group: d.invite, uses: Number(uses), expires_in: hours + "h" });
        const box = document.createElement("div");
        const p = document.createElement("p"); p.textContent = `${inv.record.max_uses} people may join ${inv.record.group} until ${new Date(inv.record.expires).toLocaleString()}. Shown this once:`;
        const code = document.createElement("code"); code.className = "wrap big-link"; code.id = "invite-url"; code.textContent = inv.url;
        box.append(p, code);
        const form = new FormData(); form.set("text", inv.url); form.set("csrf", csrf);
        const r = await fetch("/qr", { method: "POST", body: form, headers: { "X-CSRF-Token": csrf } });
        if (r.ok) { const img = document.createElement("img"); img.alt = "QR code of the invite link"; img.width = 320; img.height = 320; img.src = URL.createObjectURL(await r.blob()); box.append(img); }
        dialog("Invite link for " + inv.record.group, box);
      });
    } else if (d.withdraw) {
      if (!confirm(`Withdraw invite ${d.withdraw}? Nobody joins with it any more.`)) return;
      run(b, async () => { await api("DELETE", `/api/v1/invites/${encodeURIComponent(d.withdraw)}`); reloadSoon(); });
    } else if (d.revokeToken) {
      if (!confirm(`Revoke the token ${d.revokeToken}? It stops working at once.`)) return;
      run(b, async () => { await api("DELETE", `/api/v1/tokens/${encodeURIComponent(d.revokeToken)}`); reloadSoon(); });
    } else if (d.revoke) {
      if (!confirm(`Revoke ${d.revoke}? It stops working at once.`)) return;
      run(b, async () => { await api("DELETE", `/api/v1/gateway/keys/${encodeURIComponent(d.revoke)}`); reloadSoon(); });
    } else if (d.llm) {
      run(b, async () => {
        if (d.llm === "pull") return pull(d.model);
        const path = { load: "/api/v1/llm/load", unload: "/api/v1/llm/unload", apply: "/api/v1/llm/scale" }[d.llm];
        toast(d.llm === "apply" ? "Applying the plan…" : `${d.llm} ${d.model}…`);
        const res = await api("POST", path, d.model ? { model: d.model } : undefined);
        if (Array.isArray(res)) toast(res.map(a => `${a.model}: ${a.action}`).join("; ") || "nothing to do");
        reloadSoon();
      });
    }
  });

  document.addEventListener("change", ev => {
    const t = ev.target;
    if (t.id === "select-all") { for (const c of $$(".sel")) c.checked = t.checked; updateSelection(); }
    else if (t.classList.contains("sel")) updateSelection();
    else if (t.dataset.move) {
      const user = t.dataset.move, group = t.value;
      t.disabled = true;
      api("PATCH", `/api/v1/users/${encodeURIComponent(user)}`, { group })
        .then(() => { toast(`${user} moved to ${group}; their workspace follows`); reloadSoon(); })
        .catch(e => toast(e.message, true)).finally(() => { t.disabled = false; });
    }
  });

  document.addEventListener("submit", ev => {
    const f = ev.target;
    if (f.dataset.confirm && !confirm(f.dataset.confirm)) { ev.preventDefault(); return; }
    const kind = f.dataset.form;
    if (!kind) return;
    ev.preventDefault();
    const fd = new FormData(f);
    const name = fd.get("name");
    const button = $("button[type=submit]", f) || $("button", f);
    if (kind === "create-token") {
      run(button, async () => {
        const body = { name, scopes: fd.getAll("scope") };
        if (fd.get("expires")) body.expires_in = fd.get("expires");
        const t = await api("POST", "/api/v1/tokens", body);
        const box = document.createElement("div");
        const p = document.createElement("p"); p.textContent = "Shown this once: keep it now. Send it as Authorization: Bearer <token>.";
        const code = document.createElement("code"); code.className = "wrap"; code.id = "new-token"; code.textContent = t.token;
        box.append(p, code);
        dialog("Token " + t.record.name, box);
        $("#dialog").addEventListener("close", () => location.reload(), { once: true });
      });
      return;
    }
    run(button, async () => {
      if (kind === "create-group") await api("POST", "/api/v1/groups", { name });
      else if (kind === "add-user") await api("POST", "/api/v1/users", { name, group: f.dataset.group });
      toast(kind === "create-group" ? `Group ${name} created` : `${name} added`);
      reloadSoon();
    });
  });

  // The editor: jump to the first problem's line.
  function showFirstProblem() {
    const li = $("#problems li[data-line]:not([data-line='0'])");
    const ta = $("#file-content");
    if (!li || !ta) return;
    const line = Number(li.dataset.line);
    const lines = ta.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    ta.focus();
    ta.setSelectionRange(start, start + (lines[line - 1] || "").length);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const tr of $$("tr[data-user]")) {
      const badge = $('[data-field="state"]', tr);
      if (badge) states.set(tr.dataset.user, badge.textContent);
    }
    connect();
    showFirstProblem();
  });
})();
