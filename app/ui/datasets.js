// Descent's dashboard: your data in, your model out. The datasets page (the built-ins, your
// uploads, the upload form), and on a succeeded job's page the model's download and a
// predict form. Loaded after app.js, whose helpers (api, ApiError, h, pct, num, when, KEY,
// render) it uses; app.js calls datasetsView, modelCard, perClassTable and datasetName.
"use strict";

// An upload's id -> its name: a job's spec names an upload by id.
const uploadNames = new Map();

function rememberDatasets(items) {
  for (const d of items) if (d.kind === "upload") uploadNames.set(d.id, d.name);
  return items;
}

async function loadDatasets() {
  return rememberDatasets((await api("/v1/datasets")).items);
}

const datasetName = (ref) => uploadNames.get(ref) || ref;

const bytesText = (n) => (n === null || n === undefined ? "" : n < 1024 ? `${n} B`
  : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`);

function labelsText(classes, most = 8) {
  const shown = classes.slice(0, most).map(String).join(", ");
  return classes.length > most ? `${shown}, … (${classes.length})` : shown;
}

// -- sending an upload -------------------------------------------------------------------

// POST /v1/datasets as multipart/form-data. XMLHttpRequest, not fetch: only it reports how
// much of the body has gone. Resolves to the 201's document; rejects with an ApiError.
function sendUpload(form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/datasets");
    xhr.setRequestHeader("Authorization", `Bearer ${sessionStorage.getItem(KEY)}`);
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); });
    xhr.upload.addEventListener("load", () => onProgress(1));
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (error) { /* not JSON: the status says it */ }
      if (xhr.status === 401) { sessionStorage.removeItem(KEY); render(); }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    // The server refuses a file over the limit while it streams in, and closes the connection.
    xhr.addEventListener("error", () => reject(new ApiError(0, { detail:
      "the connection closed before an answer came (a file over the upload limit is refused as it streams in)" })));
    xhr.send(form);
  });
}

// -- the upload form ---------------------------------------------------------------------

const UPLOAD_FIELDS = ["file", "name", "label_column", "test_fraction", "preprocess"];

function uploadForm(onUploaded) {
  const controls = {
    file: h("input", { type: "file", name: "file", id: "upload-file", accept: ".csv,.npz", required: true }),
    name: h("input", { type: "text", name: "name", id: "upload-name", placeholder: "e.g. iris", autocomplete: "off" }),
    label_column: h("input", { type: "text", name: "label_column", id: "upload-label_column", placeholder: "the last column" }),
    test_fraction: h("input", { type: "text", name: "test_fraction", id: "upload-test_fraction", inputmode: "decimal", placeholder: "0.2" }),
    preprocess: h("select", { name: "preprocess", id: "upload-preprocess" },
      h("option", { value: "" }, "default (CSV: standardize, npz: none)"),
      h("option", { value: "standardize" }, "standardize"), h("option", { value: "none" }, "none")),
  };
  const captions = { file: "file (.csv with a header row, or .npz)", name: "name", label_column: "label column (CSV)",
    test_fraction: "test fraction", preprocess: "preprocess" };
  const errors = Object.fromEntries(UPLOAD_FIELDS.map((f) => [f, h("span", { class: "field-error", id: `upload-error-${f}` })]));
  controls.file.addEventListener("change", () => {  // a name from the file's, unless one was typed
    const file = controls.file.files[0];
    if (file && !controls.name.value.trim()) {
      controls.name.value = file.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 64);
    }
  });
  const formError = h("div", { class: "form-error", id: "upload-form-error" });
  const state = h("span", { class: "muted", id: "upload-state" });
  const button = h("button", { type: "submit", id: "upload" }, "Upload");
  const form = h("form", { class: "submit upload", id: "upload-form", onsubmit: async (event) => {
    event.preventDefault();
    for (const f of UPLOAD_FIELDS) { errors[f].textContent = ""; controls[f].classList.remove("invalid"); }
    formError.textContent = "";
    const body = new FormData();
    if (controls.file.files[0]) body.append("file", controls.file.files[0]);
    for (const f of UPLOAD_FIELDS.slice(1)) {
      const value = controls[f].value.trim();
      if (value !== "" || f === "name") body.append(f, value);  // only what was chosen: the server has defaults
    }
    button.disabled = true;
    state.textContent = "uploading…";
    try {
      const dataset = await sendUpload(body, (fraction) => {
        state.textContent = fraction < 1 ? `uploading… ${Math.floor(100 * fraction)}%` : "uploaded; the server is checking the file…";
      });
      state.textContent = "";
      form.reset();
      onUploaded(dataset);
    } catch (error) {
      state.textContent = "";
      if (error.status === 422 && Array.isArray(error.body?.detail)) {
        for (const item of error.body.detail) {
          const field = item.loc?.[1];
          if (field in errors) {
            errors[field].textContent = errors[field].textContent ? `${errors[field].textContent}; ${item.msg}` : item.msg;
            controls[field].classList.add("invalid");
          } else formError.append(h("div", {}, item.msg));
        }
      } else if (error.status === 409) {
        errors.name.textContent = error.message;
        controls.name.classList.add("invalid");
      } else if (error.status === 413) {
        errors.file.textContent = `Too large: ${error.message}`;
        controls.file.classList.add("invalid");
      } else if (error.status !== 401) formError.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  } },
    UPLOAD_FIELDS.map((f) => h("label", {}, captions[f], controls[f], errors[f])),
    formError, h("div", { class: "actions" }, button, state));
  return form;
}

// -- the datasets page -------------------------------------------------------------------

function uploadedText(d) {
  return `${d.name}: ${d.n_train} training and ${d.n_test} test rows` +
    (d.test_fraction === null ? " (the file's own test split)" : ` (${pct(d.test_fraction)} held out)`) +
    `, ${d.n_features} features, ${d.n_classes} classes (${labelsText(d.classes)}), preprocess ${d.preprocess}.`;
}

const NUMBER_COLUMNS = ["train", "test", "features"];
const header = (title) => h("th", { class: NUMBER_COLUMNS.includes(title) ? "number" : null }, title);

async function datasetsView() {
  const builtins = h("tbody", { id: "builtins" });
  const uploads = h("tbody", { id: "uploads" });
  const deleteError = h("div", { id: "delete-error" });
  const result = h("div", { id: "upload-result" });
  const show = (items) => {
    builtins.replaceChildren(...items.filter((d) => d.kind === "builtin").map((d) => h("tr", { "data-name": d.name },
      h("td", {}, h("b", {}, d.name)), h("td", {}, d.description),
      h("td", { class: "number" }, d.n_train), h("td", { class: "number" }, d.n_test),
      h("td", { class: "number" }, d.n_features), h("td", { class: "number" }, d.n_classes),
      h("td", {}, d.available ? h("a", { href: `#/?dataset=${encodeURIComponent(d.name)}` }, "train on it")
        : h("span", { class: "note" }, `not available here: ${d.hint || ""}`)))));
    const mine = items.filter((d) => d.kind === "upload");
    uploads.replaceChildren(...mine.map((d) => h("tr", { class: "upload", "data-id": d.id, "data-name": d.name },
      h("td", {}, h("b", {}, d.name), h("div", { class: "note nowrap" }, d.id)),
      h("td", {}, d.file_name, h("div", { class: "note", title: `SHA-256 ${d.file_sha256}` }, bytesText(d.file_bytes))),
      h("td", { class: "number" }, d.n_train), h("td", { class: "number" }, d.n_test),
      h("td", { class: "number" }, d.n_features),
      h("td", { class: "labels", title: d.classes.map(String).join(", ") }, `${d.n_classes}: ${labelsText(d.classes)}`),
      h("td", {}, d.preprocess, d.label_column !== null ? h("div", { class: "note" }, `labels: ${d.label_column}`) : null),
      h("td", {}, d.test_fraction === null ? "the file's own" : pct(d.test_fraction)),
      h("td", { class: "nowrap", title: `SHA-256 ${d.sha256}` }, bytesText(d.bytes)), h("td", { class: "nowrap" }, when(d.created_at)),
      h("td", { class: "row-actions" },
        h("a", { href: `#/?dataset=${encodeURIComponent(d.name)}`, class: "train-on" }, "train on it"),
        h("button", { type: "button", class: "danger small delete", onclick: () => remove(d) }, "Delete")))));
    if (!mine.length) uploads.replaceChildren(h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No uploads yet: upload a CSV or an .npz above.")));
  };
  const refresh = async () => show(await loadDatasets());
  const remove = async (d) => {
    deleteError.replaceChildren();
    if (!confirm(`Delete the upload ${d.name}? Jobs that ended keep their models.`)) return;
    try {
      await api(`/v1/datasets/${d.id}`, { method: "DELETE" });
    } catch (error) {
      if (error.status === 401) return;
      const user = error.status === 409 ? error.body?.used_by : null;
      deleteError.replaceChildren(h("div", { class: "error" }, h("b", {}, `${d.name} was not deleted`), ": ",
        error.status === 404 ? "it no longer exists." : error.message,
        user ? [" ", h("a", { href: `#/${user.kind}s/${user.id}`, id: "delete-blocker" }, `Open the ${user.kind} →`)] : null));
    }
    await refresh();
  };
  const form = uploadForm(async (dataset) => {
    result.replaceChildren(h("div", { class: "success", id: "upload-done", "data-id": dataset.id },
      h("b", {}, "Uploaded "), uploadedText(dataset), " ",
      h("a", { href: `#/?dataset=${encodeURIComponent(dataset.name)}` }, "Train on it →")));
    await refresh();
  });
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← all jobs and sweeps")),
    h("h1", {}, "Upload a dataset"),
    h("div", { class: "card" },
      h("p", { class: "muted" }, "A CSV with a header row: the labels in one column (the last unless you say; any strings or numbers), " +
        "every other column a number. Or an .npz with arrays x and t (and x_test, t_test for a test split of its own). " +
        "Without a test split of its own, a test fraction of the rows (0.2 unless you say) is held out."),
      form, result),
    h("h2", {}, "Your uploads"),
    h("div", { class: "card" }, deleteError, h("table", { id: "upload-table" }, h("thead", {}, h("tr", {},
      ["name", "file", "train", "test", "features", "classes", "preprocess", "test split", "stored", "uploaded", ""].map(header))), uploads)),
    h("h2", {}, "Built-in datasets"),
    h("div", { class: "card" }, h("table", {}, h("thead", {}, h("tr", {},
      ["name", "description", "train", "test", "features", "classes", ""].map(header))), builtins)));
  await refresh();
  return () => {};
}

// -- a succeeded job's model: the download and the predict form ----------------------------

async function downloadModel(jobId) {
  const response = await fetch(`/v1/jobs/${jobId}/model`, { headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` } });
  if (response.status === 401) { sessionStorage.removeItem(KEY); render(); }
  if (!response.ok) {
    const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
    throw new ApiError(response.status, body);
  }
  const url = URL.createObjectURL(await response.blob());
  // The name the API gives it (Content-Disposition), so every way out names it alike.
  const named = /filename="?([^";]+)"?/.exec(response.headers.get("content-disposition") || "");
  const link = h("a", { href: url, download: named ? named[1] : `descent-model-${jobId}.npz`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return link.download;
}

// Rows of raw features from the textarea: a JSON array (of rows, or one row), or one row a
// line with values separated by commas (or tabs, or spaces). What is not a number is sent as
// it is, so that the server's 422 says where it is.
function parseRows(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith("[")) {
    let value;
    try { value = JSON.parse(trimmed); } catch (error) { throw new Error(`not a valid JSON array: ${error.message}`); }
    return Array.isArray(value) && value.length && !value.some(Array.isArray) ? [value] : value;
  }
  return trimmed.split(/\r?\n/).map((line) => line.trim()).filter(Boolean).map((line) =>
    line.split(line.includes(",") ? "," : /[\t ]+/).map((cell) => {
      const value = cell.trim();
      return value !== "" && !isNaN(Number(value)) ? Number(value) : value;
    }));
}

function modelCard(job, dataset) {
  const downloadError = h("div", { class: "field-error", id: "download-error" });
  const downloaded = h("div", { class: "muted", id: "download-state" });
  const download = h("button", { type: "button", class: "secondary", id: "download-model", onclick: async () => {
    downloadError.textContent = "";
    downloaded.textContent = "downloading…";
    download.disabled = true;
    try {
      downloaded.textContent = `saved as ${await downloadModel(job.id)}`;
    } catch (error) {
      downloaded.textContent = "";
      if (error.status !== 401) downloadError.textContent = error.message;
    }
    download.disabled = false;
  } }, "Download the model (.npz)");
  const n = dataset ? dataset.n_features : null;
  const example = dataset?.columns ? `columns ${dataset.columns.join(", ")}` : n ? `${n} numbers` : "the model's features";
  const rows = h("textarea", { id: "predict-rows", rows: 4, spellcheck: "false",
    placeholder: `One row per line, comma-separated (${example}); or a JSON array of rows` });
  const error = h("div", { class: "field-error", id: "error-instances" });
  const answer = h("div", { id: "predict-answer" });
  const button = h("button", { type: "submit", id: "predict" }, "Predict");
  const form = h("form", { id: "predict-form", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    rows.classList.remove("invalid");
    let instances;
    try { instances = parseRows(rows.value); } catch (problem) { error.textContent = problem.message; rows.classList.add("invalid"); return; }
    button.disabled = true;
    try {
      const result = await api(`/v1/jobs/${job.id}/predict`, { method: "POST", json: { instances } });
      answer.replaceChildren(h("table", { id: "predictions" },
        h("thead", {}, h("tr", {}, ["row", "predicted", "probability"].map((t) => h("th", {}, t)))),
        h("tbody", {}, result.predictions.map((label, i) => h("tr", {},
          h("td", {}, i), h("td", { class: "label" }, String(label)),
          h("td", {}, pct(result.probabilities[i][result.classes.indexOf(label)])))))));
    } catch (problem) {
      if (problem.status === 401) return;
      const detail = problem.body?.detail;
      error.textContent = Array.isArray(detail) ? detail.map((item) => item.msg).join("; ") : problem.message;
      rows.classList.add("invalid");
      answer.replaceChildren();
    } finally {
      button.disabled = false;
    }
  } }, rows, error, h("div", { class: "actions" }, button));
  return h("div", { class: "card", id: "model-card" },
    h("h2", {}, "The model"),
    h("p", { class: "muted" }, "The chosen epoch's weights (W1, b1, …) and meta, as an .npz that numpy.load reads alone."),
    h("div", { class: "actions" }, download), downloaded, downloadError,
    h("h2", {}, "Predict"),
    h("p", { class: "muted" }, "Raw feature values: ", dataset && dataset.preprocess === "standardize"
      ? "the upload's standardisation is applied by the server." : "sent as they are."),
    form, answer);
}

// -- per-class metrics -------------------------------------------------------------------

// Precision, recall and F1 as fractions (as scikit-learn's report has them): a narrow table.

function perClassTable(perClass) {
  return h("div", { class: "scroll" }, h("table", { class: "per-class", id: "per-class" },
    h("thead", {}, h("tr", {}, ["class", "precision", "recall", "F1", "support"].map((t) => h("th", {}, t)))),
    h("tbody", {}, perClass.map((c) => h("tr", {}, h("td", { class: "label" }, String(c.label)),
      h("td", {}, num(c.precision, 3)), h("td", {}, num(c.recall, 3)), h("td", {}, num(c.f1, 3)), h("td", {}, c.support))))));
}
