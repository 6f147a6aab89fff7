// The job page: submit to POST /jobs, poll GET /jobs/<id>, then show the result and plot.
"use strict";

const $ = (id) => document.getElementById(id);
// The statuses that end a job, as the API lists them (see api/web.py).
const FINAL = new Set(JSON.parse(document.body.dataset.finalStatuses));
let polling = null;

function show(id, visible) { $(id).hidden = !visible; }

// Every request carries the bearer token when one is given (EMCOINS_API_TOKENS on the API).
function headers(extra = {}) {
  const token = $("token").value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function loadPlot(id) {
  const url = `/jobs/${id}/plot.png`;
  if (!$("token").value.trim()) {
    $("plot").src = url;
    return;
  }
  // An <img> cannot send a header: fetch the picture and show it from a blob.
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw new Error(errorText(await response.json(), response));
  $("plot").src = URL.createObjectURL(await response.blob());
}

function fixed(value) {
  return value === null || value === undefined ? "n/a" : Number(value).toFixed(3);
}

function errorText(body, response) {
  const error = body && body.error;
  if (!error) return `HTTP ${response.status}`;
  const details = Object.entries(error.details || {}).map(([k, v]) => `${k}: ${v}`);
  return details.length ? `${error.message} (${details.join("; ")})` : error.message;
}

function jobRequest() {
  const body = {};
  if (document.querySelector("input[name=data]:checked").value === "source") {
    body.source = { url: $("source-url").value.trim(), draws: Number($("source-draws").value) };
  } else {
    body.draws = $("draws").value.split(/\s+/).filter((line) => line.length > 0);
  }
  const k = $("components").value;
  body.n_components = k === "auto" ? "auto" : Number(k);
  body.restarts = Number($("restarts").value);
  body.weights = $("weights").value;
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

function row(method, coin, estimate, weight, spread) {
  const tr = document.createElement("tr");
  tr.dataset.method = method;
  tr.dataset.coin = String(coin);
  const cells = [[method, "method"], [String(coin), "coin"], [fixed(estimate), "estimate"],
                 [fixed(weight), "weight"], [fixed(spread), "spread"]];
  for (const [text, name] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    td.className = name;
    tr.appendChild(td);
  }
  return tr;
}

function showResult(job) {
  const result = job.result;
  $("result-k").textContent = String(result.n_components);
  const body = $("result-table").querySelector("tbody");
  body.replaceChildren();
  if (result.em) {
    result.em.thetas.forEach((theta, i) => body.appendChild(
      row("EM", i + 1, theta, result.em.weights[i], result.em.standard_errors[i])));
  }
  if (result.gmm) {
    result.gmm.means.forEach((mean, i) => body.appendChild(
      row("GMM", i + 1, mean, result.gmm.weights[i], result.gmm.stds[i])));
  }
  loadPlot(job.id).catch(fail);
  $("plot-svg").href = `/jobs/${job.id}/plot.svg`;
  show("result", true);
}

function showJob(job) {
  $("job-id").textContent = job.id;
  $("job-status").textContent = job.status;
  const { draws_fetched: done, draws_total: total } = job.progress;
  $("job-progress").max = Math.max(total, 1);
  $("job-progress").value = done;
  $("job-progress-text").textContent = `${done} / ${total} draws`;
  show("job", true);
  if (job.error) {
    $("job-error").textContent = `${job.error.code}: ${job.error.message}`;
    show("job-error", true);
  }
}

async function poll(id) {
  const response = await fetch(`/jobs/${id}`, { headers: headers({ Accept: "application/json" }) });
  const job = await response.json();
  if (!response.ok) throw new Error(errorText(job, response));
  showJob(job);
  if (FINAL.has(job.status)) {
    show("cancel", false);
    $("submit").disabled = false;
    if (job.status === "succeeded") showResult(job);
    return;
  }
  const wait = Math.min(Number(response.headers.get("Retry-After") || 1), 1) * 500;
  polling = setTimeout(() => poll(id).catch(fail), wait);
}

function fail(error) {
  $("form-error").textContent = error.message;
  show("form-error", true);
  $("submit").disabled = false;
}

async function submit(event) {
  event.preventDefault();
  clearTimeout(polling);
  show("form-error", false);
  show("job-error", false);
  show("result", false);
  $("submit").disabled = true;
  const response = await fetch("/jobs", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
    body: JSON.stringify(jobRequest()),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(errorText(body, response));
  $("cancel").dataset.id = body.id;
  show("cancel", true);
  await poll(body.id);
}

async function cancel() {
  const response = await fetch(`/jobs/${$("cancel").dataset.id}/cancel`, {
    method: "POST", headers: headers(),
  });
  if (!response.ok) throw new Error(errorText(await response.json(), response));
}

function toggleData() {
  const data = document.querySelector("input[name=data]:checked").value;
  show("source-fields", data === "source");
  show("draws-fields", data === "draws");
}

document.querySelectorAll("input[name=data]").forEach(
  (radio) => radio.addEventListener("change", toggleData));
$("job-form").addEventListener("submit", (event) => submit(event).catch(fail));
$("cancel").addEventListener("click", () => cancel().catch(fail));
