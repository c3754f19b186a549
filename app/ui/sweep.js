// Descent's dashboard: a sweep's page (every trial's validation curve, the leaderboard, the
// winner's test). Loaded after app.js, whose helpers (api, h, status, pct, num, when,
// confusion) it uses, and datasets.js's (loadDatasets, datasetName, perClassTable); app.js's
// router calls sweepView and its job list uses objectiveText.
"use strict";

// -- a sweep's page ---------------------------------------------------------------------

const SWEEP_ENDED = ["succeeded", "failed", "cancelled"];
const objectiveText = (objective, value) => (value === null || value === undefined ? "—"
  : objective === "val_accuracy" ? pct(value) : num(value));
const paramsText = (params) => Object.entries(params).map(([k, v]) =>
  `${k} ${Array.isArray(v) ? v.join("-") : k === "dataset" ? datasetName(v) : v}`).join(", ");

function sweepChart(target, width, curves) {
  const percent = curves.objective === "val_accuracy";
  const last = Math.max(0, ...curves.trials.map((t) => Math.max(0, ...t.epochs)));
  const xs = Array.from({ length: last }, (_, i) => i + 1);
  const series = [{}];
  const data = [xs];
  curves.trials.forEach((trial, i) => {
    const winner = trial.trial === curves.winner;
    const grey = ["pruned", "failed", "cancelled"].includes(trial.status);
    const hue = Math.round(170 + 120 * (i / Math.max(1, curves.trials.length - 1)));  // teal to violet: red is the winner's
    series.push({ label: `#${trial.trial}${winner ? " (winner)" : ""}`, spanGaps: true,
      stroke: winner ? "#c0392b" : grey ? "#a0a4ab" : `hsl(${hue} 55% 45%)`, width: winner ? 3 : 1.5,
      dash: grey ? [5, 4] : undefined, points: { show: true, size: winner ? 7 : 4 } });
    const at = new Map(trial.epochs.map((e, j) => [e, trial.values[j]]));
    data.push(xs.map((x) => (at.has(x) && at.get(x) !== null ? (percent ? 100 * at.get(x) : at.get(x)) : null)));
  });
  return new uPlot({
    width, height: 320, scales: { x: { time: false } },
    axes: [{ label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, { label: percent ? "validation accuracy (%)" : "validation loss" }],
    series, legend: { show: curves.trials.length <= 16, live: false },
  }, data, target);
}

async function sweepView(sweepId) {
  const [first] = await Promise.all([api(`/v1/sweeps/${sweepId}`), loadDatasets().catch(() => [])]);  // an upload's name
  const headerStatus = h("span", { id: "sweep-status" }, status(first.status));
  const facts = h("dl", { class: "facts" });
  const notes = h("div", { id: "sweep-notes" });
  const board = h("tbody", { id: "leaderboard" });
  const chartBox = h("div", { class: "chart", id: "sweep-chart", "data-trials": "0" });
  const testBox = h("div", { id: "sweep-test" }, h("p", { class: "muted" }, "When every trial has ended, the winner's test set is evaluated, once."));
  const cancel = h("button", { class: "danger", id: "cancel-sweep", type: "button", onclick: async () => {
    try { await api(`/v1/sweeps/${sweepId}/cancel`, { method: "POST" }); tick(); } catch (error) { notes.append(h("div", { class: "error" }, error.message)); }
  } }, "Cancel the sweep");
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← all jobs and sweeps")),
    h("h1", {}, first.name || `Sweep ${first.id.slice(0, 8)}`, " ", headerStatus),
    h("div", { class: "grid" },
      h("div", {},
        h("div", { class: "card" }, h("h2", {}, "Every trial's validation curve"), chartBox),
        h("div", { class: "card" }, h("h2", {}, "Leaderboard (best first)"),
          h("table", {}, h("thead", {}, h("tr", {}, ["#", "trial", "params", "status", "best epoch", first.objective.replace("_", " "), "epochs", "notes"].map((t) => h("th", {}, t)))), board))),
      h("div", {},
        h("div", { class: "card" }, facts, notes, h("div", { class: "actions" }, cancel)),
        h("div", { class: "card" }, h("h2", {}, "The winner's test metrics"), testBox))));
  const width = Math.max(320, chartBox.clientWidth || 700);
  let chart = null;
  let timer = null;
  let shown = "";
  const tick = async () => {
    clearTimeout(timer);
    try {
      const [sweep, curves] = await Promise.all([api(`/v1/sweeps/${sweepId}`), api(`/v1/sweeps/${sweepId}/curves`)]);
      headerStatus.replaceChildren(status(sweep.status));
      cancel.hidden = SWEEP_ENDED.includes(sweep.status);
      const c = sweep.counts;
      facts.replaceChildren(h("dt", {}, "objective"), h("dd", {}, `${sweep.objective} (${sweep.objective === "val_loss" ? "lower" : "higher"} is better)`),
        h("dt", {}, "method"), h("dd", {}, `${sweep.method}, ${sweep.trial_count} trials, at most ${sweep.spec.max_concurrent} at once`),
        h("dt", {}, "base"), h("dd", {}, paramsText(sweep.spec.base)),
        h("dt", {}, "trials"), h("dd", {}, Object.entries(c).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(", ")),
        ...(sweep.spec.early_stopping ? [h("dt", {}, "early stopping"), h("dd", {}, `median rule after ${sweep.spec.early_stopping.grace_epochs} epochs`)] : []),
        h("dt", {}, "created"), h("dd", {}, when(sweep.created_at)), h("dt", {}, "finished"), h("dd", {}, when(sweep.finished_at) || "—"));
      notes.replaceChildren(...(sweep.error ? [h("div", { class: "error", id: "sweep-error" }, h("b", {}, sweep.error.code), ": ", sweep.error.message)] : []));
      board.replaceChildren(...sweep.trials.map((t, rank) => h("tr", { class: `job${sweep.winner && sweep.winner.trial === t.trial ? " winner" : ""}`, "data-trial": t.trial, onclick: () => { if (t.job_id) location.hash = `#/jobs/${t.job_id}`; } },
        h("td", {}, t.objective_value === null ? "" : rank + 1), h("td", {}, t.trial), h("td", {}, paramsText(t.params)), h("td", {}, status(t.status)),
        h("td", {}, t.best_epoch ?? ""), h("td", {}, objectiveText(sweep.objective, t.objective_value)), h("td", {}, t.epochs_run),
        h("td", { class: "note" }, t.error ? `${t.error.code}: ${t.error.message}` : (t.warnings || []).join(" ")))));
      if (sweep.test) {
        const test = sweep.test;
        testBox.replaceChildren(h("div", { class: "big", id: "sweep-test-accuracy" }, pct(test.accuracy)),
          h("p", { class: "muted" }, `trial ${sweep.winner.trial} (${paramsText(sweep.winner.params)}), chosen by ${sweep.objective} ${objectiveText(sweep.objective, sweep.winner.objective_value)} at epoch ${sweep.winner.best_epoch}; test loss ${num(test.loss)} on ${test.n} examples, evaluated once`),
          h("h2", {}, "Confusion matrix"), confusion(test.confusion_matrix, test.per_class.map((c) => c.label)),
          h("h2", {}, "Per class"), perClassTable(test.per_class));
      }
      const drawn = JSON.stringify(curves);
      if (drawn !== shown) {  // uPlot's series are fixed at creation: a new chart when they change
        shown = drawn;
        if (chart) chart.destroy();
        chartBox.replaceChildren();
        chart = sweepChart(chartBox, width, curves);
        chartBox.dataset.trials = String(curves.trials.length);
      }
      if (!SWEEP_ENDED.includes(sweep.status)) timer = setTimeout(tick, 2000);
    } catch (error) {
      if (error.status !== 401) timer = setTimeout(tick, 4000);
    }
  };
  await tick();
  return () => { clearTimeout(timer); if (chart) chart.destroy(); };
}
