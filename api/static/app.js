// The job page: submit to POST /jobs, follow the job's event stream (or poll GET /jobs/<id>
// when the stream cannot be opened), show the result; list the caller's jobs (GET /jobs).
// The page's address is the job's (/jobs/<id>), so a reload or a shared link opens it again.
//
// Safety: nothing from the API or the user is ever parsed as HTML; every string goes in
// through textContent or an attribute.
"use strict";

const $ = (id) => document.getElementById(id);
// The statuses that end a job, as the API lists them (see api/web.py).
const FINAL = new Set(JSON.parse(document.body.dataset.finalStatuses));
const TOKEN_KEY = "emcoins-token";
// Rows of the posterior table shown; the CSV download has them all.
const POSTERIOR_ROWS_SHOWN = 20;
// Iterations of the trajectory shown: the first ones and the last ones past this many.
const TRAJECTORY_HEAD = 40;
const TRAJECTORY_TAIL = 10;
const HISTORY_PAGE_SIZE = 20;
// Drops of the event stream in a row (without an event) before the page polls instead.
const STREAM_RECONNECTS = 3;

// The job on show: its id and what stops following it.
let current = null;
let historyToken = "";
let jsonUrl = null;

class HttpError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function show(id, visible) { $(id).hidden = !visible; }

function token() { return $("token").value.trim(); }

// Every request carries the bearer token when one is given (EMCOINS_API_TOKENS on the API).
function headers(extra = {}) {
  return token() ? { ...extra, Authorization: `Bearer ${token()}` } : extra;
}

function errorText(body, response) {
  const error = body && body.error;
  if (!error) return `HTTP ${response.status}`;
  const details = Object.entries(error.details || {}).map(([k, v]) => `${k}: ${v}`);
  return details.length ? `${error.message} (${details.join("; ")})` : error.message;
}

// GET a JSON resource of the API; an error answer becomes an HttpError with its message.
async function getJson(url, signal) {
  const response = await fetch(url, {
    headers: headers({ Accept: "application/json" }), signal, cache: "no-store",
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new HttpError(errorText(body, response), response.status);
  return { body, response };
}

function fixed(value, digits = 3) {
  return value === null || value === undefined ? "n/a" : Number(value).toFixed(digits);
}

// 0.95 as "95%", 0.975 as "97.5%".
function percent(level) { return `${Number((level * 100).toPrecision(12))}%`; }

// The API sends no intervals at all when every replicate failed.
function interval(bounds) {
  return bounds ? `[${fixed(bounds[0])}, ${fixed(bounds[1])}]` : "n/a";
}

function cell(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = text;
  if (className) element.className = className;
  if (tag === "th") element.scope = "col";
  return element;
}

function tableRow(cells, tag = "td") {
  const tr = document.createElement("tr");
  for (const [text, name] of cells) tr.appendChild(cell(tag, text, name));
  return tr;
}

function fail(error) {
  if (error && error.name === "AbortError") return;
  $("form-error").textContent = error.message;
  show("form-error", true);
  $("submit").disabled = false;
}

// ---- The form ----------------------------------------------------------------------------

// Rows of numbers from pasted or uploaded text; a first line of column names is skipped.
function parseCounts(text) {
  const rows = [];
  const lines = text.split(/\r\n|\r|\n/);
  lines.forEach((line, index) => {
    const cells = line.trim().split(/[\s,;]+/).filter((c) => c.length > 0);
    if (cells.length === 0) return;
    const numeric = cells.every((c) => /^\d+$/.test(c));
    if (!numeric && rows.length === 0 && cells.some((c) => /[A-Za-z_]/.test(c))) return;
    if (!numeric) {
      throw new Error(`Counts line ${index + 1}: "${line.trim()}" is not whole numbers.`);
    }
    if (cells.length < 2 || cells.length > 3) {
      throw new Error(`Counts line ${index + 1}: give heads, flips and optionally a count.`);
    }
    rows.push(cells.map(Number));
  });
  if (rows.length === 0) throw new Error("Counts: give at least one row.");
  return rows;
}

function dataKind() { return document.querySelector("input[name=data]:checked").value; }

function jobRequest() {
  const body = {};
  const kind = dataKind();
  if (kind === "source") {
    body.source = { url: $("source-url").value.trim(), draws: Number($("source-draws").value) };
  } else if (kind === "draws") {
    body.draws = $("draws").value.split(/\s+/).filter((line) => line.length > 0);
  } else {
    body.counts = parseCounts($("counts").value);
  }
  const k = $("components").value;
  body.n_components = k === "auto" ? "auto" : Number(k);
  if (k === "auto") body.max_components = Number($("max-components").value);
  body.restarts = Number($("restarts").value);
  body.weights = $("weights").value;
  body.methods = [...document.querySelectorAll("input[name=method]:checked")]
    .map((box) => box.value);
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  if ($("callback").value.trim()) body.callback = { url: $("callback").value.trim() };
  // An empty number of replicates asks for no analysis; the API checks the rest.
  if ($("bootstrap-replicates").value !== "") {
    body.bootstrap = {
      replicates: Number($("bootstrap-replicates").value),
      kind: $("bootstrap-kind").value,
      level: Number($("bootstrap-level").value),
    };
  }
  if ($("test-components").value !== "") {
    body.test_components = { max_components: Number($("test-components").value) };
    if ($("test-replicates").value !== "") {
      body.test_components.replicates = Number($("test-replicates").value);
    }
  }
  return body;
}

async function submit(event) {
  event.preventDefault();
  show("form-error", false);
  $("submit").disabled = true;
  const request = jobRequest();
  const response = await fetch("/jobs", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
    body: JSON.stringify(request),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorText(body, response));
  $("submit").disabled = false;
  history.pushState({ job: body.id }, "", body.url);
  await openJob(body.id);
  loadHistory().catch(fail);
}

function toggleData() {
  const kind = dataKind();
  show("source-fields", kind === "source");
  show("draws-fields", kind === "draws");
  show("counts-fields", kind === "counts");
}

function toggleComponents() {
  show("max-components-label", $("components").value === "auto");
}

// A chosen file's text goes into its text area, where it can be read and edited.
async function readFile(input, target) {
  const file = input.files[0];
  if (file) $(target).value = await file.text();
}

function rememberToken() {
  // sessionStorage only, and only when asked: it lasts as long as the tab, and a page
  // script could read it, so the default is to keep the token in the field alone.
  if ($("remember-token").checked && token()) sessionStorage.setItem(TOKEN_KEY, token());
  else sessionStorage.removeItem(TOKEN_KEY);
}

// ---- One job -----------------------------------------------------------------------------

function stopFollowing() {
  if (current) {
    current.controller.abort();
    clearTimeout(current.timer);
  }
  current = null;
}

function jobIdFromPath(path) {
  const match = /^\/jobs\/([^/]+)\/?$/.exec(path);
  return match ? decodeURIComponent(match[1]) : null;
}

function clearJob() {
  stopFollowing();
  show("job", false);
  show("result", false);
  show("job-error", false);
  markHistory(null);
}

async function openJob(id, { focus = false } = {}) {
  stopFollowing();
  const controller = new AbortController();
  current = { id, controller, timer: null };
  show("result", false);
  show("job-error", false);
  show("form-error", false);
  $("job-id").textContent = id;
  $("job-status").textContent = "loading";
  $("job-follow").textContent = "";
  $("job-spec").replaceChildren();
  show("job", true);
  markHistory(id);
  if (focus) $("job-heading").focus();
  let answer;
  try {
    answer = await getJson(`/jobs/${encodeURIComponent(id)}`, controller.signal);
  } catch (error) {
    if (error.name === "AbortError") return;
    $("job-status").textContent = error.status === 404 ? "not found" : "unavailable";
    show("cancel", false);
    show("delete", false);
    $("job-error").textContent = error.message;
    show("job-error", true);
    return;
  }
  showJob(answer.body);
  if (FINAL.has(answer.body.status)) finish(answer.body);
  else watch(id, controller.signal).catch(fail);
}

function isCurrent(id, signal) { return current && current.id === id && !signal.aborted; }

// The replicates done of an analysis, in a job's progress or a progress event (which may
// carry the count bare).
function replicatesOf(progress) {
  if (!progress) return null;
  if ("analysis" in progress && "done" in progress) return progress;
  return progress.replicates || null;
}

// "Bootstrap", or the stage of the components test running: k coins against k+1.
function analysisName({ analysis, stage }) {
  if (analysis === "bootstrap") return "Bootstrap";
  if (analysis === "components_test") {
    return stage ? `Test of ${stage} against ${stage + 1} coins:` : "Test for the number of coins:";
  }
  return analysis;
}

function showProgress(progress) {
  const { draws_fetched: done, draws_total: total } = progress;
  if (done !== undefined && total !== undefined) {
    $("job-progress").max = Math.max(total, 1);
    $("job-progress").value = done;
    $("job-progress-text").textContent = `${done} / ${total} draws`;
  }
  const replicates = replicatesOf(progress);
  if (!replicates) return;
  $("replicates-analysis").textContent = analysisName(replicates);
  $("replicates-progress").max = Math.max(replicates.total, 1);
  $("replicates-progress").value = replicates.done;
  $("replicates-progress-text").textContent = `${replicates.done} / ${replicates.total}`;
  show("replicates-line", true);
}

function showStatus(status) {
  $("job-status").textContent = status;
  show("cancel", !FINAL.has(status));
}

function describeSpec(job) {
  const spec = job.spec || {};
  const items = [];
  if (spec.source) items.push(["Draws", `${spec.source.draws} from ${spec.source.url}`]);
  else items.push(["Draws", `${job.progress.draws_total} given inline`]);
  const chooser = spec.test_components
    ? `the test, up to ${spec.test_components.max_components}`
    : `BIC, up to ${spec.max_components}`;
  items.push(["Coins", spec.n_components === "auto" ? `auto (${chooser})`
    : String(spec.n_components)]);
  items.push(["Weights", String(spec.weights)]);
  items.push(["Restarts", String(spec.restarts)]);
  items.push(["Methods", (spec.methods || []).join(", ")]);
  items.push(["Seed", String(spec.seed)]);
  if (spec.bootstrap) {
    const boot = spec.bootstrap;
    items.push(["Bootstrap", `${boot.replicates} ${boot.kind} replicates, ` +
      `${percent(boot.level)} intervals`]);
  }
  if (spec.test_components) {
    const test = spec.test_components;
    items.push(["Test for the number of coins",
      `up to ${test.max_components} coins, ${test.replicates} replicates per test`]);
  }
  if (job.callback) {
    items.push(["Callback", `${job.callback.url}: ${job.callback.state} ` +
      `(${job.callback.attempts} attempts)`]);
  }
  items.push(["Created", job.created_at]);
  if (job.finished_at) items.push(["Finished", job.finished_at]);
  const list = $("job-spec");
  list.replaceChildren();
  for (const [term, value] of items) {
    list.appendChild(cell("dt", term));
    list.appendChild(cell("dd", value));
  }
}

function offerJson(job) {
  if (jsonUrl) URL.revokeObjectURL(jsonUrl);
  const blob = new Blob([JSON.stringify(job, null, 2)], { type: "application/json" });
  jsonUrl = URL.createObjectURL(blob);
  $("job-json").href = jsonUrl;
  $("job-json").download = `${job.id}.json`;
}

function showJob(job) {
  $("job-id").textContent = job.id;
  showStatus(job.status);
  show("replicates-line", false);
  showProgress(job.progress);
  show("delete", true);
  describeSpec(job);
  offerJson(job);
  if (job.error) {
    $("job-error").textContent = `${job.error.code}: ${job.error.message}`;
    show("job-error", true);
  }
  updateHistoryRow(job);
}

function finish(job) {
  if (current && current.id === job.id) clearTimeout(current.timer);
  showJob(job);
  show("cancel", false);
  $("job-follow").textContent = "";
  if (job.status === "succeeded" && job.result) showResult(job);
}

// ---- Following a running job --------------------------------------------------------------

// Server-Sent Events from a fetch() body (an EventSource cannot send the Authorization
// header). Calls onEvent({event, data, id}) per event, and stops reading when it returns
// true; onRetry(ms) per "retry:" field.
async function readEvents(body, onEvent, onRetry) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let first = true;
  let event = { type: "", data: [], id: null };
  let stop = false;
  const line = (text) => {
    if (text === "") {
      if (event.data.length > 0) {
        const dispatched = { event: event.type || "message", data: event.data.join("\n"),
                             id: event.id };
        if (onEvent(dispatched) === true) stop = true;
      }
      event = { type: "", data: [], id: null };
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event.type = value;
    else if (field === "data") event.data.push(value);
    else if (field === "id" && !value.includes("\0")) event.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) onRetry(Number(value));
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    if (first && buffer.length > 0) {
      if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
      first = false;
    }
    // A "\r" at the end may be the first half of "\r\n": wait for the next chunk.
    const end = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
    const lines = buffer.slice(0, end).split(/\r\n|\r|\n/);
    buffer = lines.pop() + buffer.slice(end);
    for (const text of lines) {
      line(text);
      if (stop) {
        reader.cancel().catch(() => {});
        return;
      }
    }
  }
}

function eventsUrl(id) {
  // Read when following starts: the events service's base URL, empty for the API's origin.
  const base = (document.body.dataset.eventsUrl || "").replace(/\/+$/, "");
  return `${base}/jobs/${encodeURIComponent(id)}/events`;
}

// Follows the stream until its "done" event; null when the stream cannot be opened (or
// keeps dropping), so that the caller polls instead.
async function stream(id, signal) {
  let lastId = null;
  let retry = 2000;
  let drops = 0;
  while (drops < STREAM_RECONNECTS) {
    const extra = { Accept: "text/event-stream" };
    if (lastId) extra["Last-Event-ID"] = lastId;
    let response;
    try {
      response = await fetch(eventsUrl(id), { headers: headers(extra), signal, cache: "no-store" });
    } catch (error) {
      if (signal.aborted) throw error;
      return null;
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !type.startsWith("text/event-stream") || !response.body) {
      response.body?.cancel().catch(() => {});
      return null;
    }
    $("job-follow").textContent = "(following its events)";
    let job = null;
    let seen = false;
    try {
      await readEvents(response.body, ({ event, data, id: eventId }) => {
        if (eventId) lastId = eventId;
        seen = true;
        const payload = JSON.parse(data);
        if (event === "status") showStatus(payload.status);
        else if (event === "progress") showProgress(payload);
        else if (event === "done") job = payload;
        return job !== null;
      }, (ms) => { retry = ms; });
    } catch (error) {
      if (signal.aborted) throw error;
    }
    if (job) return job;
    drops = seen ? 0 : drops + 1;
    $("job-follow").textContent = "(reconnecting)";
    await new Promise((resolve) => { setTimeout(resolve, retry); });
    if (signal.aborted) throw new DOMException("stopped", "AbortError");
  }
  return null;
}

async function poll(id, signal) {
  const { body: job, response } = await getJson(`/jobs/${encodeURIComponent(id)}`, signal);
  if (!isCurrent(id, signal)) return;
  if (FINAL.has(job.status)) {
    finish(job);
    loadHistory().catch(fail);
    return;
  }
  showJob(job);
  $("job-follow").textContent = "(checking every few seconds)";
  // Retry-After is how long the API asks clients to wait between polls.
  const seconds = Number(response.headers.get("Retry-After"));
  const wait = Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 1000;
  current.timer = setTimeout(() => poll(id, signal).catch(fail), wait);
}

async function watch(id, signal) {
  let job = null;
  try {
    job = await stream(id, signal);
  } catch (error) {
    if (signal.aborted) return;
  }
  if (!isCurrent(id, signal)) return;
  if (job) {
    finish(job);
    loadHistory().catch(fail);
  } else {
    await poll(id, signal);
  }
}

async function cancel() {
  const response = await fetch(`/jobs/${encodeURIComponent(current.id)}/cancel`, {
    method: "POST", headers: headers({ Accept: "application/json" }),
  });
  if (!response.ok) throw new Error(errorText(await response.json().catch(() => null), response));
}

async function remove() {
  const id = current && current.id;
  if (!id || !window.confirm(`Delete job ${id} and its result?`)) return;
  const response = await fetch(`/jobs/${encodeURIComponent(id)}`, {
    method: "DELETE", headers: headers({ Accept: "application/json" }),
  });
  if (!response.ok && response.status !== 404) {
    throw new Error(errorText(await response.json().catch(() => null), response));
  }
  clearJob();
  history.pushState({}, "", "/");
  await loadHistory();
}

// ---- The result ---------------------------------------------------------------------------

async function loadPlot(id) {
  const url = `/jobs/${encodeURIComponent(id)}/plot.png`;
  if (!token()) {
    $("plot").src = url;
    return;
  }
  // An <img> cannot send a header: fetch the picture and show it from a blob.
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw new Error(errorText(await response.json(), response));
  $("plot").src = URL.createObjectURL(await response.blob());
}

// A download through fetch, so that it carries the token and the Accept the API needs.
async function download(url, accept, filename) {
  const response = await fetch(url, { headers: headers({ Accept: accept }) });
  if (!response.ok) throw new Error(errorText(await response.json().catch(() => null), response));
  const blobUrl = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = blobUrl;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(blobUrl), 60000);
}

// With a bootstrap, every row has interval cells after its estimate and its weight (empty
// for the methods that have none), so the columns stay aligned: ``intervals`` is their
// two texts, or null without a bootstrap.
function estimateRow(method, coin, estimate, weight, spread, intervals) {
  const cells = [[method, "method"], [String(coin), "coin"], [fixed(estimate), "estimate"],
                 [fixed(weight), "weight"], [fixed(spread), "spread"]];
  if (intervals) {
    cells.splice(3, 0, [intervals[0], "estimate-interval"]);
    cells.splice(5, 0, [intervals[1], "weight-interval"]);
  }
  const tr = tableRow(cells);
  tr.dataset.method = method;
  tr.dataset.coin = String(coin);
  return tr;
}

function showEstimates(result) {
  const body = $("result-table").querySelector("tbody");
  body.replaceChildren();
  const boot = result.em && result.em.bootstrap;
  for (const th of $("result-table").querySelectorAll(".interval-head")) {
    th.textContent = boot ? `${percent(boot.level)} interval` : "";
    th.hidden = !boot;
  }
  const none = boot ? ["", ""] : null;
  if (result.em) {
    result.em.thetas.forEach((theta, i) => body.appendChild(
      estimateRow("EM", i + 1, theta, result.em.weights[i], result.em.standard_errors[i],
                  boot ? [interval(boot.thetas[i]), interval(boot.weights[i])] : null)));
  }
  if (result.gmm) {
    result.gmm.means.forEach((mean, i) => body.appendChild(
      estimateRow("GMM", i + 1, mean, result.gmm.weights[i], result.gmm.stds[i], none)));
  }
  show("bootstrap-note", Boolean(boot));
  if (boot) {
    $("bootstrap-note").textContent = `Intervals: ${percent(boot.level)} percentile, from ` +
      `${boot.replicates} ${boot.kind} bootstrap replicates; ${boot.failed} failed to fit, ` +
      `${boot.ambiguous} matched to the coins ambiguously (two ways almost equally good).`;
  }
}

function showNotes(result) {
  const warnings = $("warnings");
  warnings.replaceChildren();
  for (const warning of result.warnings || []) {
    const item = document.createElement("li");
    item.dataset.code = warning.code;
    item.appendChild(cell("strong", warning.code));
    item.appendChild(document.createTextNode(`: ${warning.message}`));
    warnings.appendChild(item);
  }
  show("warnings", warnings.children.length > 0);
  const errors = $("method-errors");
  errors.replaceChildren();
  for (const [method, error] of Object.entries(result.errors || {})) {
    const item = document.createElement("li");
    item.dataset.method = method;
    item.textContent = `${method.toUpperCase()} failed: ${error.code}: ${error.message}`;
    errors.appendChild(item);
  }
  show("method-errors", errors.children.length > 0);
}

function showComponentsTest(job) {
  const test = job.result.components_test;
  show("components-test-area", Boolean(test));
  if (!test) return;
  $("components-test-replicates").textContent = String(test.replicates);
  const body = $("components-test-table").querySelector("tbody");
  body.replaceChildren();
  for (const { k, statistic, p_value: p } of test.tests) {
    const selected = k === test.selected;
    const tr = tableRow([[`${k} vs ${k + 1}`, "k"], [fixed(statistic, 2), "statistic"],
                         [fixed(p, 3), "p-value"], [selected ? "yes" : "", "selected"]]);
    tr.dataset.k = String(k);
    if (selected) tr.className = "chosen";
    body.appendChild(tr);
  }
  const why = test.tests.some(({ k }) => k === test.selected)
    ? "the first test not significant at 0.05"
    : "every test up to the largest K allowed was significant at 0.05";
  const fitted = (job.spec || {}).n_components === "auto"
    ? "the K fitted" : "reported only; the fit keeps the K asked for";
  $("components-test-note").textContent = `Selected: ${test.selected} coins, ${why} (${fitted}).`;
}

function showModelChoice(job) {
  const result = job.result;
  const byTest = Boolean(result.components_test) && (job.spec || {}).n_components === "auto";
  $("bic-chooser").textContent = byTest ? "the test below" : "BIC";
  const body = $("bic-table").querySelector("tbody");
  body.replaceChildren();
  const bic = result.bic || {};
  const icl = result.icl || {};
  const ks = Object.keys(bic).sort((a, b) => Number(a) - Number(b));
  for (const k of ks) {
    const tr = tableRow([[k, "k"], [fixed(bic[k], 2), "bic"], [fixed(icl[k], 2), "icl"]]);
    tr.dataset.k = k;
    if (Number(k) === result.n_components) {
      tr.className = "chosen";
      tr.firstChild.textContent = `${k} (chosen)`;
    }
    body.appendChild(tr);
  }
  show("bic-table", ks.length > 0);
}

function showConvergence(result) {
  const body = $("convergence-table").querySelector("tbody");
  body.replaceChildren();
  const yes = (flag) => (flag ? "yes" : "no");
  for (const [name, fit, loglik] of [["EM", result.em, result.em && result.em.log_likelihood],
                                      ["GMM", result.gmm, null]]) {
    if (!fit) continue;
    const tr = tableRow([[name, "method"], [yes(fit.converged), "converged"],
                         [String(fit.iterations), "iterations"], [fixed(loglik, 2), "loglik"]]);
    tr.dataset.method = name;
    body.appendChild(tr);
  }
}

function showRestarts(em) {
  const averaged = em && em.averaged;
  show("restarts-area", Boolean(averaged));
  if (!averaged) return;
  $("averaged-restarts").textContent = String(averaged.restarts);
  const body = $("averaged-table").querySelector("tbody");
  body.replaceChildren();
  averaged.thetas.forEach((theta, i) => {
    const tr = tableRow([[String(i + 1), "coin"], [fixed(theta), "estimate"],
                         [fixed(averaged.weights[i]), "weight"], [fixed(averaged.std[i]), "std"]]);
    tr.dataset.coin = String(i + 1);
    body.appendChild(tr);
  });
  const summary = em.restart_summary;
  show("restart-summary", Boolean(summary));
  if (!summary) return;
  for (const td of $("restart-summary").querySelectorAll("td[data-field]")) {
    const value = summary[td.dataset.field];
    const field = td.dataset.field;
    if (field === "restarts" || field === "at_best") td.textContent = String(value);
    else if (field === "tolerance") td.textContent = Number(value).toExponential(1);
    else td.textContent = fixed(value, 2);
  }
}

function showPosteriors(job) {
  const posteriors = job.result.em && job.result.em.posteriors;
  show("posteriors-area", Boolean(posteriors));
  if (!posteriors) return;
  const k = job.result.em.thetas.length;
  const head = $("posteriors-table").querySelector("thead");
  const coins = Array.from({ length: k }, (_, i) => [`P(coin ${i + 1})`, null]);
  head.replaceChildren(tableRow([["Heads"], ["Flips"], ["Draws"], ...coins], "th"));
  const body = $("posteriors-table").querySelector("tbody");
  body.replaceChildren();
  const rows = posteriors.pairs.slice(0, POSTERIOR_ROWS_SHOWN);
  rows.forEach(([heads, flips, count], r) => {
    const probabilities = posteriors.probabilities[r];
    const best = probabilities.indexOf(Math.max(...probabilities));
    const tr = tableRow([[String(heads), "heads"], [String(flips), "flips"],
                         [String(count), "count"],
                         ...probabilities.map((p, i) => [fixed(p), i === best ? "p best" : "p"])]);
    body.appendChild(tr);
  });
  const of = posteriors.truncated ? `more than ${posteriors.pairs.length}`
    : String(posteriors.pairs.length);
  $("posteriors-note").textContent =
    `the ${rows.length} most frequent of ${of} distinct draws`;
  $("posteriors-csv").href = `/jobs/${encodeURIComponent(job.id)}/posteriors`;
}

function showTrajectory(em) {
  const trajectory = em && em.trajectory;
  show("trajectory-area", Boolean(trajectory));
  if (!trajectory) return;
  const steps = trajectory.log_likelihood.length;
  const k = trajectory.thetas.length ? trajectory.thetas[0].length : 0;
  const head = $("trajectory-table").querySelector("thead");
  const coins = Array.from({ length: k }, (_, i) => [`θ${i + 1}`]);
  head.replaceChildren(tableRow([["Iteration"], ["Log-likelihood"], ...coins], "th"));
  const body = $("trajectory-table").querySelector("tbody");
  body.replaceChildren();
  const shown = steps > TRAJECTORY_HEAD + TRAJECTORY_TAIL
    ? [...Array(TRAJECTORY_HEAD).keys(), null,
       ...Array.from({ length: TRAJECTORY_TAIL }, (_, i) => steps - TRAJECTORY_TAIL + i)]
    : [...Array(steps).keys()];
  for (const i of shown) {
    if (i === null) {
      body.appendChild(tableRow([["…"], [`${steps - TRAJECTORY_HEAD - TRAJECTORY_TAIL} more`]]));
      continue;
    }
    body.appendChild(tableRow([[String(i + 1)], [fixed(trajectory.log_likelihood[i], 2)],
      ...(trajectory.thetas[i] || []).map((theta) => [fixed(theta)])]));
  }
  $("trajectory-note").textContent = `${steps} iterations`;
}

function showResult(job) {
  const result = job.result;
  $("result-k").textContent = String(result.n_components);
  showNotes(result);
  showEstimates(result);
  showModelChoice(job);
  showComponentsTest(job);
  showConvergence(result);
  showRestarts(result.em);
  showPosteriors(job);
  showTrajectory(result.em);
  loadPlot(job.id).catch(fail);
  $("plot-svg").href = `/jobs/${encodeURIComponent(job.id)}/plot.svg`;
  show("result", true);
}

// ---- History ------------------------------------------------------------------------------

function localTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const two = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

function historyRow(job) {
  const tr = document.createElement("tr");
  tr.dataset.id = job.id;
  const created = document.createElement("td");
  const time = cell("time", localTime(job.created_at));
  time.dateTime = job.created_at;
  created.appendChild(time);
  const link = document.createElement("a");
  link.href = `/jobs/${encodeURIComponent(job.id)}`;
  link.className = "job-link";
  link.appendChild(cell("code", job.id));
  link.addEventListener("click", (event) => {
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    history.pushState({ job: job.id }, "", link.getAttribute("href"));
    openJob(job.id, { focus: true }).catch(fail);
  });
  const name = document.createElement("td");
  name.appendChild(link);
  tr.append(created, name, cell("td", job.status, "status"),
            cell("td", `${job.progress.draws_fetched} / ${job.progress.draws_total}`, "draws"));
  if (current && current.id === job.id) tr.setAttribute("aria-current", "page");
  return tr;
}

function updateHistoryRow(job) {
  const tr = $("history-table").querySelector(`tr[data-id="${CSS.escape(job.id)}"]`);
  if (tr) tr.replaceWith(historyRow(job));
}

function markHistory(id) {
  for (const tr of $("history-table").querySelectorAll("tbody tr")) {
    if (tr.dataset.id === id) tr.setAttribute("aria-current", "page");
    else tr.removeAttribute("aria-current");
  }
}

async function loadHistory({ more = false } = {}) {
  const params = new URLSearchParams({ page_size: String(HISTORY_PAGE_SIZE) });
  if (more) params.set("page_token", historyToken);
  let page;
  try {
    ({ body: page } = await getJson(`/jobs?${params}`));
  } catch (error) {
    $("history-note").textContent = error.status === 401
      ? "Give the API token to see your jobs." : error.message;
    if (!more) $("history-table").querySelector("tbody").replaceChildren();
    show("history-more", false);
    return;
  }
  const body = $("history-table").querySelector("tbody");
  if (!more) body.replaceChildren();
  for (const job of page.jobs) body.appendChild(historyRow(job));
  historyToken = page.next_page_token;
  show("history-more", Boolean(historyToken));
  $("history-note").textContent = body.children.length ? "Newest first." : "No jobs yet.";
}

// ---- Start --------------------------------------------------------------------------------

function route({ focus = false } = {}) {
  const id = jobIdFromPath(window.location.pathname);
  if (id) openJob(id, { focus }).catch(fail);
  else clearJob();
}

function start() {
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    $("token").value = saved;
    $("remember-token").checked = true;
  }
  document.querySelectorAll("input[name=data]").forEach(
    (radio) => radio.addEventListener("change", toggleData));
  $("components").addEventListener("change", toggleComponents);
  $("counts-file").addEventListener("change", () => readFile($("counts-file"), "counts")
    .catch(fail));
  $("draws-file").addEventListener("change", () => readFile($("draws-file"), "draws")
    .catch(fail));
  $("job-form").addEventListener("submit", (event) => submit(event).catch(fail));
  $("cancel").addEventListener("click", () => cancel().catch(fail));
  $("delete").addEventListener("click", () => remove().catch(fail));
  $("history-refresh").addEventListener("click", () => loadHistory().catch(fail));
  $("history-more").addEventListener("click", () => loadHistory({ more: true }).catch(fail));
  $("posteriors-csv").addEventListener("click", (event) => {
    event.preventDefault();
    download(event.currentTarget.href, "text/csv", `${current.id}-posteriors.csv`).catch(fail);
  });
  $("plot-svg").addEventListener("click", (event) => {
    event.preventDefault();
    download(event.currentTarget.href, "image/svg+xml", `${current.id}.svg`).catch(fail);
  });
  $("remember-token").addEventListener("change", rememberToken);
  $("token").addEventListener("change", () => {
    rememberToken();
    // A new token may see other jobs, or the one in the address.
    loadHistory().catch(fail);
    route();
  });
  window.addEventListener("popstate", () => route({ focus: true }));
  toggleData();
  toggleComponents();
  route();
  loadHistory().catch(fail);
}

start();
