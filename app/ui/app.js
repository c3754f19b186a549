// Descent's dashboard: static, no build step. Everything goes through the public HTTP API
// with the tenant's key, which is asked once and kept in this tab's sessionStorage.
"use strict";

const KEY = "descent-api-key";
const main = document.getElementById("main");
let leave = () => {};  // stops the current view's timers and streams

// -- the API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.detail;
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await fetch(path, { ...options, headers });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    render();
    throw new ApiError(401, body);
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// Server-sent events over fetch (EventSource cannot send an Authorization header): calls
// onEvent(name, data, id) for each event; resumes with Last-Event-ID when the connection drops.
function follow(path, onEvent) {
  const controller = new AbortController();
  let lastId = null;
  let stopped = false;
  (async () => {
    let delay = 500;
    while (!stopped) {
      try {
        const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch(path, { headers, signal: controller.signal });
        if (!response.ok) throw new ApiError(response.status, null);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        delay = 500;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
            let name = "message", data = "", id = null;
            for (const line of block.split(/\r?\n/)) {
              if (line.startsWith(":")) continue;  // a keep-alive comment
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "event") name = text;
              else if (field === "data") data += (data ? "\n" : "") + text;
              else if (field === "id") id = text;
            }
            if (!data) continue;
            if (id) lastId = id;
            onEvent(name, JSON.parse(data), id);
            if (name === "end") { stopped = true; return; }
          }
        }
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
        if (error.status && error.status !== 503) { onEvent("failed", { error: String(error.message) }); return; }
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5000);
    }
  })();
  return () => { stopped = true; controller.abort(); };
}

// -- helpers ---------------------------------------------------------------------------

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const status = (value) => h("span", { class: `status ${value}`, "data-status": value }, value);
const pct = (x) => (x === null || x === undefined ? "" : `${(100 * x).toFixed(2)}%`);
const num = (x, digits = 4) => (x === null || x === undefined ? "" : Number(x).toFixed(digits));
const when = (iso) => (iso ? iso.slice(0, 19).replace("T", " ") : "");
const TERMINAL = ["succeeded", "failed", "cancelled", "pruned"];

function summary(spec) {
  return `${datasetName(spec.dataset)} · hidden ${spec.hidden_sizes.join("-")} ${spec.activation} · ` +
    `${spec.loss} · lr ${spec.learning_rate} · batch ${spec.batch_size} · ${spec.epochs} epochs`;
}

// -- the key ---------------------------------------------------------------------------

function login(message) {
  const input = h("input", { id: "api-key", type: "password", placeholder: "dsk_…", autocomplete: "off" });
  const form = h("form", { class: "card login", onsubmit: async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    try {
      await api("/v1/me");
      if (location.hash === "#/") render();
      else location.hash = "#/";  // its hashchange renders (once: a second render would
                                  // replace a form the user may have begun to fill)
    } catch (error) {
      login(error.status === 401 ? "That key is unknown or revoked." : error.message);
    }
  } },
    h("h1", {}, "Your API key"),
    h("p", { class: "muted" }, "Descent keeps it in this tab only (sessionStorage). `make run` printed one, and keeps it in .run/api-key."),
    input, message ? h("p", { class: "field-error", id: "login-error" }, message) : null,
    h("button", { type: "submit" }, "Open the dashboard"));
  main.replaceChildren(form);
  input.focus();
}

// -- the job list and the submit form ---------------------------------------------------

const FIELDS = [
  ["dataset", "select", null], ["hidden_sizes", "text", "50"], ["activation", "select", "sigmoid"],
  ["loss", "select", "cross_entropy"], ["learning_rate", "number", "0.1"], ["momentum", "number", "0"],
  ["batch_size", "number", "100"], ["epochs", "number", "10"], ["validation_fraction", "number", "0.1"],
  ["seed", "number", "0"], ["name", "text", ""],
];
const CHOICES = { activation: ["sigmoid", "relu"], loss: ["cross_entropy", "sum_squares"] };

async function submitForm(datasets) {
  const controls = {};
  const errors = {};
  const fields = FIELDS.map(([name, kind, value]) => {
    let control;
    if (name === "dataset") {  // the built-ins available here, then your uploads (by name)
      const group = (label, items) => (items.length ? h("optgroup", { label }, items.map((d) => h("option", { value: d.name }, d.name))) : null);
      control = h("select", { name, id: `field-${name}` },
        group("built-in", datasets.filter((d) => d.kind !== "upload" && d.available)),
        group("your uploads", datasets.filter((d) => d.kind === "upload")));
      const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("dataset");
      control.value = datasets.some((d) => d.name === wanted) ? wanted : "digits";
      if (!control.value && control.options.length) control.selectedIndex = 0;
    } else if (kind === "select") {
      control = h("select", { name, id: `field-${name}` }, CHOICES[name].map((o) => h("option", { value: o }, o)));
      if (value) control.value = value;
    } else {
      control = h("input", { name, id: `field-${name}`, type: kind === "number" ? "text" : "text",
                             inputmode: kind === "number" ? "decimal" : null, value });
    }
    controls[name] = control;
    errors[name] = h("span", { class: "field-error", id: `error-${name}` });
    return h("label", {}, name.replace(/_/g, " "), control, errors[name]);
  });
  const formError = h("div", { class: "form-error", id: "form-error" });
  const form = h("form", { class: "submit", id: "submit-form", onsubmit: async (event) => {
    event.preventDefault();
    for (const name in errors) { errors[name].textContent = ""; controls[name].classList.remove("invalid"); }
    formError.textContent = "";
    const spec = {};
    for (const [name, kind] of FIELDS) {
      const raw = controls[name].value.trim();
      if (raw === "") continue;
      if (name === "hidden_sizes") spec[name] = raw.split(/[\s,]+/).filter(Boolean).map((x) => (isNaN(Number(x)) ? x : Number(x)));
      else if (kind === "number") spec[name] = isNaN(Number(raw)) ? raw : Number(raw);
      else spec[name] = raw;
    }
    try {
      const job = await api("/v1/jobs", { method: "POST", json: spec });
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      if (error.status === 422 && Array.isArray(error.body?.detail)) {
        for (const item of error.body.detail) {
          const field = item.loc?.[1];
          if (field in errors) {
            errors[field].textContent = item.msg;
            controls[field].classList.add("invalid");
          } else formError.textContent = item.msg;
        }
      } else formError.textContent = error.message;
    }
  } }, fields, formError, h("div", { class: "actions" }, h("button", { type: "submit", id: "submit" }, "Train")));
  return form;
}

async function listView() {
  const datasets = await loadDatasets();
  const body = h("tbody", { id: "jobs" });
  const sweepsBody = h("tbody", { id: "sweeps" });
  main.replaceChildren(
    h("h1", {}, "Train a network"),
    h("div", { class: "card" }, await submitForm(datasets),
      h("p", { class: "muted hint" }, "Your own data: ", h("a", { href: "#/datasets", id: "datasets-link" }, "upload a CSV or an .npz"), ", then train on it here.")),
    h("h2", {}, "Your sweeps"),
    h("div", { class: "card" }, h("table", {}, h("thead", {}, h("tr", {}, ["sweep", "status", "objective", "trials", "winner", "created"].map((t) => h("th", {}, t)))), sweepsBody)),
    h("h2", {}, "Your jobs"),
    h("div", { class: "card" }, h("table", {}, h("thead", {}, h("tr", {}, ["job", "status", "what", "progress", "created"].map((t) => h("th", {}, t)))), body)));
  let timer = null;
  const refresh = async () => {
    try {
      const sweeps = await api("/v1/sweeps?limit=10");
      sweepsBody.replaceChildren(...sweeps.items.map((sweep) => h("tr", { class: "job sweep", "data-id": sweep.id, onclick: () => { location.hash = `#/sweeps/${sweep.id}`; } },
        h("td", {}, sweep.name || sweep.id.slice(0, 8)), h("td", {}, status(sweep.status)), h("td", {}, sweep.objective),
        h("td", {}, `${sweep.trial_count} (${sweep.method})`),
        h("td", {}, sweep.winner ? `trial ${sweep.winner.trial}: ${objectiveText(sweep.objective, sweep.winner.objective_value)}` : "—"),
        h("td", {}, when(sweep.created_at)))));
      if (!sweeps.items.length) sweepsBody.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No sweeps yet: POST /v1/sweeps, or descent sweep SPEC.json.")));
      const page = await api("/v1/jobs?limit=50");
      body.replaceChildren(...page.items.map((job) => h("tr", { class: "job", "data-id": job.id, onclick: () => { location.hash = `#/jobs/${job.id}`; } },
        h("td", {}, job.name || job.id.slice(0, 8)), h("td", {}, status(job.status)), h("td", {}, summary(job.spec)),
        h("td", {}, `${job.progress.epoch}/${job.progress.epochs} epochs`), h("td", {}, when(job.created_at)))));
      if (!page.items.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No jobs yet: train one above.")));
    } catch (error) { /* a 401 re-renders; anything else: try again on the next tick */ }
    timer = setTimeout(refresh, 2000);
  };
  refresh();
  return () => clearTimeout(timer);
}

// -- a job's page -----------------------------------------------------------------------

function lossChart(target, width) {
  return new uPlot({
    width, height: 300, scales: { x: { time: false }, y: { distr: 3 } },  // a log scale for the loss
    axes: [{ label: "iteration (mini-batch)" },
      // uPlot's own labels round below 0.001 to "0": 1e-4 and below in powers of ten.
      { label: "loss (log scale)", values: (u, splits) => splits.map((v) => (v == null ? "" : v >= 0.001 ? uPlot.fmtNum(v) : v.toExponential(0))) }],
    series: [{}, { label: "mini-batch loss", stroke: "#8fb0e8", width: 1 },
      { label: "train loss (epoch)", stroke: "#e07b39", width: 2, spanGaps: true, points: { show: true, size: 7 } },
      { label: "validation loss (epoch)", stroke: "#c0392b", width: 2, spanGaps: true, points: { show: true, size: 7 } }],
  }, [[], [], [], []], target);
}

function accuracyChart(target, width) {
  return new uPlot({
    width, height: 220, scales: { x: { time: false } },
    axes: [{ label: "epoch" }, { label: "accuracy (%)" }],
    series: [{}, { label: "train", stroke: "#e07b39", width: 2, points: { show: true } },
      { label: "validation", stroke: "#c0392b", width: 2, points: { show: true } }],
  }, [[], [], []], target);
}

// A heat map of the counts; rows and columns named by `labels` (an upload's own classes).
function confusion(matrix, labels = matrix.map((_, i) => i)) {
  const most = Math.max(1, ...matrix.flat());
  const name = (i) => h("th", { class: "label", title: String(labels[i]) }, String(labels[i]));
  const header = h("tr", {}, h("th", { class: "corner" }, "true \\ predicted"), matrix.map((_, j) => name(j)));
  const rows = matrix.map((row, i) => h("tr", {}, name(i), row.map((count) => {
    const shade = count / most;
    return h("td", { style: `background: rgba(31,63,143,${(0.08 + 0.92 * shade).toFixed(3)}); color: ${shade > 0.5 ? "#fff" : "#1d2330"}`, title: String(count) }, count);
  })));
  return h("div", { class: "scroll" }, h("table", { class: "confusion", id: "confusion" }, h("thead", {}, header), h("tbody", {}, rows)));
}

async function jobView(jobId) {
  const [job, datasets] = await Promise.all([api(`/v1/jobs/${jobId}`), loadDatasets().catch(() => [])]);
  const dataset = datasets.find((d) => d.name === job.spec.dataset || d.id === job.spec.dataset);
  const modelBox = h("div", { id: "model" });
  const facts = h("dl", { class: "facts" });
  const notes = h("div", { id: "notes" });
  const bar = h("div");
  const progressText = h("span", { class: "muted", id: "progress-text" });
  const cancel = h("button", { class: "danger", id: "cancel", type: "button", onclick: async () => {
    try { await api(`/v1/jobs/${jobId}/cancel`, { method: "POST" }); } catch (error) { notes.append(h("div", { class: "error" }, error.message)); }
  } }, "Cancel");
  const lossBox = h("div", { class: "chart", id: "loss-chart", "data-points": "0" });
  const accBox = h("div", { class: "chart", id: "accuracy-chart" });
  const epochRows = h("tbody", { id: "epochs" });
  const metricsBox = h("div", { id: "metrics" }, h("p", { class: "muted" }, "The test set is evaluated once, when the job has succeeded."));
  const headerStatus = h("span", { id: "job-status" }, status(job.status));
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← all jobs")),
    h("h1", {}, job.name || `Job ${job.id.slice(0, 8)}`, " ", headerStatus),
    h("div", { class: "grid" },
      h("div", {},
        h("div", { class: "card" }, h("div", { class: "progress" }, bar), progressText, h("h2", {}, "Loss"), lossBox, h("h2", {}, "Accuracy: train vs validation"), accBox),
        h("div", { class: "card" }, h("h2", {}, "Epochs"), h("table", {}, h("thead", {}, h("tr", {}, ["epoch", "iteration", "train loss", "train acc", "val loss", "val acc"].map((t) => h("th", {}, t)))), epochRows))),
      h("div", {},
        h("div", { class: "card" }, facts, notes, h("div", { class: "actions" }, cancel)),
        h("div", { class: "card" }, h("h2", {}, "Test metrics"), metricsBox), modelBox)));
  const width = Math.max(320, lossBox.clientWidth || 700);
  const loss = lossChart(lossBox, width);
  const accuracy = accuracyChart(accBox, width);
  // The drawn curve: x, raw loss, and each epoch's train and validation loss at its iteration.
  const xs = [], raw = [], train = [], val = [];
  const rows = [];
  const ends = new Map();  // iteration -> epoch row, for epochs whose points arrive later
  let redraw = null;
  let drawnOnce = false;
  const draw = () => {
    redraw = null;
    loss.setData([xs, raw, train, val]);
    if (xs.length && !drawnOnce) {  // the benchmark reads these marks: after the next frame
      drawnOnce = true;
      requestAnimationFrame(() => setTimeout(() => performance.mark("descent:curve-drawn")));
    }
    lossBox.dataset.points = String(xs.length);
    accuracy.setData([rows.map((r) => r.epoch), rows.map((r) => 100 * r.train_accuracy), rows.map((r) => (r.val_accuracy === null ? null : 100 * r.val_accuracy))]);
  };
  const later = () => { if (!redraw) redraw = requestAnimationFrame(draw); };
  const addPoints = (iterations, losses) => {
    for (let i = 0; i < iterations.length; i++) {
      const row = ends.get(iterations[i]);
      xs.push(iterations[i]); raw.push(losses[i]);
      train.push(row ? row.train_loss : null); val.push(row ? row.val_loss : null);
    }
    if (xs.length > 4 * width) {  // keep the drawing near the chart's width in points
      const keep = xs.map((_, i) => i % 2 === 1 || i === xs.length - 1 || train[i] !== null);
      for (const series of [xs, raw, train, val]) {
        const kept = series.filter((_, i) => keep[i]);
        series.length = 0;
        for (const value of kept) series.push(value);
      }
    }
  };
  const addRow = (row) => {
    if (rows.some((r) => r.epoch === row.epoch)) return;
    rows.push(row);
    ends.set(row.iteration, row);
    const at = xs.lastIndexOf(row.iteration);
    if (at >= 0) { train[at] = row.train_loss; val[at] = row.val_loss; }
    epochRows.append(h("tr", {}, h("td", {}, row.epoch), h("td", {}, row.iteration), h("td", {}, num(row.train_loss)), h("td", {}, pct(row.train_accuracy)), h("td", {}, num(row.val_loss)), h("td", {}, pct(row.val_accuracy))));
  };
  const showState = (state) => {
    headerStatus.replaceChildren(status(state.status));
    cancel.hidden = TERMINAL.includes(state.status);
    if (state.status === "succeeded" && !modelBox.firstChild) modelBox.append(modelCard(job, dataset));
    notes.replaceChildren(
      ...(state.warnings || []).map((w) => h("div", { class: "warning" }, w)),
      ...(state.error ? [h("div", { class: "error", id: "job-error" }, h("b", {}, state.error.code), ": ", state.error.message)] : []));
  };
  const showProgress = (p) => {
    const fraction = headerStatus.textContent === "succeeded" ? 1 : (p.fraction || 0);
    // A live bar glides to each new width; an ended job's is drawn where it ends at once.
    bar.style.transition = TERMINAL.includes(headerStatus.textContent) ? "none" : "";
    bar.style.width = `${(100 * fraction).toFixed(1)}%`;
    progressText.textContent = `epoch ${p.epoch}/${p.epochs} · iteration ${p.iteration}` + (p.eta_seconds ? ` · about ${Math.ceil(p.eta_seconds)} s left` : "");
  };
  const loadMetrics = async () => {
    const m = await api(`/v1/jobs/${jobId}/metrics`);
    if (!m.test) {  // a sweep's trial that did not win: its test set was never read
      metricsBox.replaceChildren(h("p", { class: "muted", id: "no-test" },
        "A sweep's trial: the test set is evaluated once, for the sweep's winner only. ",
        job.sweep_id ? h("a", { href: `#/sweeps/${job.sweep_id}` }, "See the sweep.") : null),
        h("dl", { class: "facts" }, h("dt", {}, "train accuracy"), h("dd", {}, pct(m.train.accuracy)),
          h("dt", {}, "validation accuracy"), h("dd", {}, m.validation ? pct(m.validation.accuracy) : "—"),
          h("dt", {}, "best epoch"), h("dd", {}, m.best_epoch)));
      return;
    }
    const gap = m.overfitting;
    metricsBox.replaceChildren(
      h("div", { class: "big", id: "test-accuracy" }, pct(m.test.accuracy)),
      h("p", { class: "muted" }, `test accuracy on ${m.test.n} examples (loss ${num(m.test.loss)}), evaluated once, on epoch ${m.best_epoch}'s model`),
      h("dl", { class: "facts" }, h("dt", {}, "train accuracy"), h("dd", {}, pct(m.train.accuracy)),
        h("dt", {}, "validation accuracy"), h("dd", {}, m.validation ? pct(m.validation.accuracy) : "—"),
        h("dt", {}, "overfitting gap"), h("dd", {}, `${(100 * gap.gap).toFixed(2)} points (train − test)${gap.flagged ? " — overfitting" : ""}`),
        h("dt", {}, "epochs run"), h("dd", {}, `${m.epochs_run}${m.early_stopped ? " (stopped early)" : ""}`),
        h("dt", {}, "duration"), h("dd", {}, `${m.duration_seconds.toFixed(1)} s`)),
      h("h2", {}, "Confusion matrix"), confusion(m.test.confusion_matrix, m.test.per_class.map((c) => c.label)),
      h("h2", {}, "Per class"), perClassTable(m.test.per_class));
  };
  const showFacts = (j) => facts.replaceChildren(h("dt", {}, "id"), h("dd", {}, j.id), h("dt", {}, "spec"), h("dd", {}, summary(j.spec)),
    ...(dataset?.kind === "upload" ? [h("dt", {}, "dataset"), h("dd", { id: "job-dataset" }, h("a", { href: "#/datasets" }, dataset.name), ` (upload ${dataset.id})`)] : []),
    ...(j.sweep_id ? [h("dt", {}, "sweep"), h("dd", {}, h("a", { href: `#/sweeps/${j.sweep_id}`, id: "sweep-link" }, `trial ${j.trial} of sweep ${j.sweep_id.slice(0, 8)}`))] : []),
    h("dt", {}, "created"), h("dd", {}, when(j.created_at)), h("dt", {}, "finished"), h("dd", {}, when(j.finished_at) || "—"),
    h("dt", {}, "attempts"), h("dd", {}, j.attempts));
  showFacts(job);
  showState(job);
  showProgress(job.progress);
  // What there is so far, downsampled on the server to about the chart's width; then live.
  const curve = await api(`/v1/jobs/${jobId}/curve?max_points=${Math.min(100000, 2 * width)}`);
  performance.mark("descent:curve-fetched");
  curve.epochs.forEach((row) => ends.set(row.iteration, row));
  addPoints(curve.iterations, curve.loss);
  curve.epochs.forEach(addRow);
  draw();
  if (job.status === "succeeded") loadMetrics();
  const stop = follow(`/v1/jobs/${jobId}/events?since=${curve.next}&max_points=${width}`, (name, data) => {
    if (name === "status") { showState(data); if (data.status === "succeeded") loadMetrics(); }
    else if (name === "progress") { addPoints(data.iterations, data.loss); showProgress(data); later(); }
    else if (name === "epoch") { addRow(data); later(); }
    else if (name === "end") api(`/v1/jobs/${jobId}`).then((ended) => { showState(ended); showFacts(ended); showProgress(ended.progress); });
  });
  return () => { stop(); loss.destroy(); accuracy.destroy(); };
}

// -- routing ---------------------------------------------------------------------------

// One render at a time: a render asked for while one is under way runs after it, so a slow
// render that started first can never replace the page of the one asked for last.
let rendering = null;
let renderAgain = false;
function render() {
  if (rendering) { renderAgain = true; return rendering; }
  rendering = (async () => {
    try {
      do { renderAgain = false; await renderOnce(); } while (renderAgain);
    } finally { rendering = null; }
  })();
  return rendering;
}

async function renderOnce() {
  leave();
  leave = () => {};
  const key = sessionStorage.getItem(KEY);
  document.getElementById("forget").hidden = !key;
  document.getElementById("nav").hidden = !key;
  if (!key) { document.getElementById("who").textContent = ""; login(); return; }
  try {
    const me = await api("/v1/me");
    document.getElementById("who").textContent = `tenant ${me.tenant.name}`;
    const job = location.hash.match(/^#\/jobs\/([0-9a-f]{32})$/);
    const sweep = location.hash.match(/^#\/sweeps\/([0-9a-f]{32})$/);
    leave = job ? await jobView(job[1]) : sweep ? await sweepView(sweep[1])
      : location.hash === "#/datasets" ? await datasetsView() : await listView();
  } catch (error) {
    if (error.status !== 401) main.replaceChildren(h("div", { class: "card error" }, error.status === 404 ? `No such ${location.hash.startsWith("#/sweeps/") ? "sweep" : "job"}.` : error.message));
  }
}

document.getElementById("forget").addEventListener("click", () => { sessionStorage.removeItem(KEY); render(); });
window.addEventListener("hashchange", render);
document.addEventListener("DOMContentLoaded", render);  // after every deferred script (sweep.js, datasets.js)
