// ctxstore console: live updates over server-sent events, and forms that submit on change.
// Rows arrive rendered by the server, so a live row is the row a reload would show.
"use strict";

document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});

const liveTable = document.querySelector("[data-live]");
const badge = document.getElementById("live");

function setBadge(state, text) {
  if (!badge) return;
  badge.className = "live " + state;
  badge.textContent = text;
}

function fresh(row) {
  if (!row) return;
  row.classList.add("fresh");
  row.addEventListener("animationend", () => row.classList.remove("fresh"), { once: true });
}

function addTo(id, delta) {
  const el = document.getElementById(id);
  if (el) el.textContent = String(Number(el.textContent) + delta);
}

if (liveTable && window.EventSource) {
  const source = new EventSource(liveTable.dataset.live);
  source.addEventListener("open", () => setBadge("on", "live"));
  source.addEventListener("error", () => setBadge("off", "reconnecting…"));

  // One evolution's timeline: a row per write, and its status, phase and version.
  source.addEventListener("entry", (event) => {
    const data = JSON.parse(event.data);
    if (document.getElementById("w" + data.seq)) return;
    const body = document.getElementById("timeline");
    body.insertAdjacentHTML("beforeend", data.html);
    const row = document.getElementById("w" + data.seq);
    fresh(row);
    addTo("write-count", 1);
    if (row && row.classList.contains("rejected")) addTo("rejected-count", 1);
  });
  source.addEventListener("state", (event) => {
    const data = JSON.parse(event.data);
    const status = document.querySelector('[data-field="status"] .badge');
    if (status && data.status) {
      status.textContent = data.status;
      status.className = "badge s-" + data.status;
    }
    const phase = document.querySelector('[data-field="phase"]');
    if (phase && data.phase) phase.textContent = data.phase;
    const version = document.querySelector('[data-field="version"]');
    if (version) version.textContent = String(data.version);
  });
  source.addEventListener("gone", (event) => {
    source.close();
    setBadge("off", JSON.parse(event.data).message);
  });

  // The evolutions list: a changed row replaces its old self; a new one goes on top.
  source.addEventListener("row", (event) => {
    const data = JSON.parse(event.data);
    const old = document.getElementById("row-" + data.id);
    if (!data.html) {
      if (old) old.remove();
      return;
    }
    if (old) {
      old.outerHTML = data.html;
    } else if (liveTable.dataset.insert === "yes") {
      document.getElementById("rows").insertAdjacentHTML("afterbegin", data.html);
    } else {
      return;
    }
    fresh(document.getElementById("row-" + data.id));
  });
}

// The GraphQL page: run the query, show the reply as it came.
const graphqlForm = document.getElementById("graphql");
if (graphqlForm) {
  const text = document.getElementById("query");
  const result = document.getElementById("result");
  const took = document.getElementById("took");
  document.querySelectorAll("a.example").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      text.value = link.dataset.query;
    });
  });
  graphqlForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const started = performance.now();
    took.textContent = "running…";
    try {
      const reply = await fetch("/graphql", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ query: text.value }),
      });
      result.textContent = JSON.stringify(await reply.json(), null, 2);
      took.textContent = `${reply.status} in ${Math.round(performance.now() - started)} ms`;
    } catch (error) {
      result.textContent = String(error);
      took.textContent = "failed";
    }
  });
}
