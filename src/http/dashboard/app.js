// kiln's dashboard: the jobs table, a job's live curves, checkpoints and generation, and a
// compare view that overlays the curves of chosen jobs. Plain JavaScript against kiln's own API;
// charts are Chart.js (vendored). Live data comes from the event streams, GET /events for the
// jobs table and GET /jobs/{id}/events for a job, read with fetch because EventSource cannot
// send the API key.
'use strict';

const KEY = 'kiln-api-key';
const view = document.getElementById('view');
const keyForm = document.getElementById('key-form');
let cleanup = [];

const esc = s => String(s ?? '').replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const sleep = ms => new Promise(r => setTimeout(r, ms));
const fmt = v => (typeof v !== 'number' ? '' : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(4));
const FINAL = ['succeeded', 'failed', 'cancelled'];

// ---- the API, with the key ------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = 'Bearer ' + key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    askForKey(key ? 'That key was refused.' : '');
    throw Object.assign(new Error('an API key is needed'), { status: 401 });
  }
  if (!response.ok) {
    let detail = response.status + ' ' + response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw Object.assign(new Error(detail), { status: response.status });
  }
  return response;
}
const getJson = async path => (await api(path)).json();

// Stops what the current view runs (streams, charts, loops) and empties it.
function clearView() {
  cleanup.forEach(f => f());
  cleanup = [];
  view.innerHTML = '';
}

// Without a key nothing the last one read stays on screen.
function askForKey(message) {
  clearView();
  keyForm.hidden = false;
  document.getElementById('key-error').textContent = message;
  document.getElementById('key').focus();
}
keyForm.addEventListener('submit', e => {
  e.preventDefault();
  const field = document.getElementById('key');
  sessionStorage.setItem(KEY, field.value.trim());
  field.value = '';
  keyForm.hidden = true;
  route();
});
document.getElementById('forget-key').addEventListener('click', () => {
  sessionStorage.removeItem(KEY);
  document.getElementById('key').value = '';
  route(); // clears the view first, then asks for a key
});

// ---- event streams ------------------------------------------------------------------------------

function parseEvent(block) {
  const event = { id: null, event: 'message', data: [] };
  for (const line of block.split(/\r\n|\r|\n/)) {
    if (!line || line[0] === ':') continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'id') event.id = value;
    else if (field === 'event') event.event = value;
    else if (field === 'data') event.data.push(value);
  }
  if (!event.data.length) return null;
  event.data = JSON.parse(event.data.join('\n'));
  return event;
}

// Reads the Server-Sent Events at `path` (sent after `last`, an event id, when given): calls
// onOpen once the server answered, then onEvent for each event. Returns when the stream ends;
// throws when it cannot be opened or drops. fetch, because EventSource cannot send the key.
async function readEvents(path, last, signal, onOpen, onEvent) {
  const headers = last ? { 'Last-Event-ID': last } : {};
  const reader = (await api(path, { headers, signal })).body.getReader();
  onOpen();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      const event = parseEvent(block);
      if (event) onEvent(event);
    }
  }
}

// Calls onEvent for every event of job `id`, history first, until the stream ends (the job
// finished or was deleted) or `signal` aborts; reconnects with Last-Event-ID if it drops.
async function follow(id, onEvent, signal) {
  let last = null;
  for (let attempt = 0; attempt < 30 && !signal.aborted; attempt++) {
    try {
      await readEvents(`/jobs/${id}/events`, last, signal, () => {}, event => {
        if (event.id) last = event.id;
        onEvent(event);
      });
      return;
    } catch (e) {
      if (signal.aborted || e.status === 401) return;
      await sleep(2000);
    }
  }
}

// Follows every job's events (GET /events) until `signal` aborts: `opened()` each time the
// stream opens, `lost()` when it cannot be opened or drops; it is opened again with
// Last-Event-ID after 1 s, then 2, 4, ... up to 30 s while it keeps failing.
async function watchAll(onEvent, opened, lost, signal) {
  let last = null, delay = 1000;
  while (!signal.aborted) {
    try {
      await readEvents('/events', last, signal, () => { delay = 1000; opened(); }, event => {
        if (event.id) last = event.id;
        onEvent(event);
      });
    } catch (e) {
      if (signal.aborted || e.status === 401) return;
    }
    lost();
    await sleep(delay);
    delay = Math.min(delay * 2, 30000);
  }
}

// ---- charts -------------------------------------------------------------------------------------

const COLOURS = ['#c2410c', '#2563eb', '#16a34a', '#9333ea', '#0891b2', '#ca8a04', '#db2777', '#4b5563'];

// The axes at the right, by name: accuracies on 0-1, gradient norms on their own scale.
const RIGHT_AXES = {
  accuracy: { min: 0, max: 1, title: 'accuracy' },
  grad_norm: { min: 0, title: 'gradient norm' },
};

// A line chart over steps or epochs (`perEpoch`: whole-number ticks and visible points), its
// left axis titled `yTitle`.
function lineChart(canvas, xTitle, yTitle, perEpoch = false) {
  const x = { type: 'linear', title: { display: true, text: xTitle } };
  if (perEpoch) x.ticks = { stepSize: 1, precision: 0 };
  const chart = new Chart(canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      animation: false, maintainAspectRatio: false, normalized: true, parsing: false,
      elements: { point: { radius: perEpoch ? 3 : 0 }, line: { borderWidth: 1.5 } },
      interaction: { mode: 'nearest', intersect: false },
      scales: { x, y: { type: 'linear', title: { display: true, text: yTitle } } },
    },
  });
  let pending = false;
  // The series named `label`, made on first use, on the left axis or on the right one `axis`
  // names (dashed); `colour` keeps one job's series alike in the compare view.
  chart.series = (label, axis = 'y', colour = null) => {
    let set = chart.data.datasets.find(d => d.label === label);
    if (!set) {
      colour = colour || COLOURS[chart.data.datasets.length % COLOURS.length];
      set = { label, data: [], borderColor: colour, backgroundColor: colour, yAxisID: axis };
      if (axis !== 'y') {
        set.borderDash = [6, 3];
        if (!chart.options.scales[axis]) {
          const { min, max, title } = RIGHT_AXES[axis];
          chart.options.scales[axis] = { type: 'linear', position: 'right', min, max,
            title: { display: true, text: title }, grid: { drawOnChartArea: false } };
        }
      }
      chart.data.datasets.push(set);
    }
    return set;
  };
  // Redraws at most four times a second however fast events come; the canvas's data-points
  // and data-series say what is drawn (the browser test reads them).
  chart.changed = () => {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      chart.update('none');
      canvas.dataset.points = chart.data.datasets.reduce((n, d) => n + d.data.length, 0);
      canvas.dataset.series = chart.data.datasets.length;
    }, 250);
  };
  cleanup.push(() => chart.destroy());
  return chart;
}

// What a model kind's epoch chart draws: its left axis and the epoch metrics it plots (each on
// the left axis or the right one named). A language model's train_loss is the log of its
// perplexity, so it is left out.
const LANGUAGE_MODELS = ['rnn_lm'];
const EPOCH_PLOTS = {
  classifier: { title: 'loss', metrics: { train_loss: 'y', test_loss: 'y', train_accuracy: 'accuracy', test_accuracy: 'accuracy' } },
  language: { title: 'perplexity', metrics: { perplexity: 'y', validation_perplexity: 'y', grad_norm: 'grad_norm' } },
};
const modelFamily = job => (LANGUAGE_MODELS.includes(job.spec.model.kind) ? 'language' : 'classifier');

// Plots the metrics of epoch row `row` that `metrics` (name -> axis) names.
function plotEpoch(chart, row, metrics, prefix = '', colour = null) {
  for (const [name, axis] of Object.entries(metrics)) {
    if (typeof row[name] !== 'number') continue;
    chart.series(prefix + name, axis, colour).data.push({ x: row.epoch, y: row[name] });
  }
  chart.changed();
}

// ---- the jobs table -------------------------------------------------------------------------------

// A job's best epoch so far, from its epoch rows: the highest test accuracy or the lowest
// (validation) perplexity.
function best(rows) {
  const acc = rows.map(r => r.test_accuracy).filter(v => typeof v === 'number');
  if (acc.length) return 'test acc ' + Math.max(...acc).toFixed(3);
  const ppl = rows.map(r => r.validation_perplexity ?? r.perplexity).filter(v => typeof v === 'number');
  return ppl.length ? 'perplexity ' + Math.min(...ppl).toFixed(2) : '';
}

async function allJobs() {
  let jobs = [], after = null;
  for (let page = 0; page < 20; page++) {
    const answer = await getJson('/jobs?limit=1000' + (after ? '&after=' + after : ''));
    jobs = jobs.concat(answer.jobs);
    if (!answer.next_after || answer.jobs.length < 1000) break;
    after = answer.next_after;
  }
  return jobs.reverse();
}

// Polls GET /jobs this often, and only while the event stream cannot be opened.
const FALLBACK_POLL_MS = 30000;

// The jobs table is driven by the server-wide event stream: it opens GET /events, then reads
// the jobs once, then changes rows as events come (status, progress from step and epoch events,
// a new job read on its first event, a deleted one removed). While the stream cannot be opened
// it polls GET /jobs every 30 s. `#jobs`'s data-live says which (the browser test reads it).
async function jobsView() {
  view.innerHTML = `<h1>Jobs</h1>
    <p><button id="compare-chosen">Compare chosen jobs</button> <span class="muted">newest first;</span>
    <span class="muted" id="live">connecting…</span></p>
    <table id="jobs"><thead><tr><th></th><th>Job</th><th>Status</th><th>Model</th><th>Backend</th>
    <th>Progress</th><th>Best</th></tr></thead><tbody></tbody></table>`;
  const table = document.getElementById('jobs');
  const body = table.querySelector('tbody');
  const live = document.getElementById('live');
  const chosen = new Set();
  const jobs = new Map(); // id -> job, as GET /jobs shows it, updated by events
  const epochs = new Map(); // id -> its epoch rows
  const fetching = new Map(); // id -> the events that came while the job was being read
  let loaded = false, queued = [];
  document.getElementById('compare-chosen').onclick = () => { location.hash = '#/compare?ids=' + [...chosen].join(','); };
  body.addEventListener('change', e => { if (e.target.checked) chosen.add(e.target.value); else chosen.delete(e.target.value); });
  const abort = new AbortController();
  cleanup.push(() => abort.abort());

  const cells = job => {
    const p = job.progress, share = p.steps ? Math.min(p.step / p.steps, 1) : 0;
    return `<td><input type="checkbox" value="${esc(job.id)}" ${chosen.has(job.id) ? 'checked' : ''}></td>
      <td><a href="#/jobs/${esc(job.id)}">${esc(job.name || job.id.slice(0, 8))}</a></td>
      <td><span class="status ${esc(job.status)}">${esc(job.status)}</span></td>
      <td>${esc(job.spec.model.kind)}</td><td>${esc(job.backend || job.spec.backend)}</td>
      <td><progress max="1" value="${share}"></progress> ${(share * 100).toFixed(0)}%</td>
      <td>${esc(best(epochs.get(job.id) || []))}</td>`;
  };
  const row = id => body.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
  const show = id => {
    const job = jobs.get(id);
    let tr = row(id);
    if (!job) { if (tr) tr.remove(); return; }
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.id = id;
      body.prepend(tr);
    }
    tr.innerHTML = cells(job);
  };
  // Adds epoch rows to a job's, one per epoch.
  const addEpochs = (id, rows) => {
    const byEpoch = new Map((epochs.get(id) || []).map(r => [r.epoch, r]));
    for (const r of rows) byEpoch.set(r.epoch, r);
    epochs.set(id, [...byEpoch.values()]);
  };
  const readEpochs = async id => {
    const metrics = await getJson(`/jobs/${id}/metrics?limit=1`).catch(() => null);
    if (metrics && jobs.has(id)) { addEpochs(id, metrics.epochs || []); show(id); }
  };
  // Reads every job (each time the stream opens, and when polling).
  const load = async () => {
    const list = await allJobs();
    const seen = new Set(list.map(j => j.id));
    for (const id of jobs.keys()) if (!seen.has(id)) jobs.delete(id);
    for (const job of list) jobs.set(job.id, job);
    body.innerHTML = '';
    for (const job of [...list].reverse()) show(job.id);
    for (const job of list) if (!epochs.has(job.id) || !FINAL.includes(job.status)) readEpochs(job.id);
  };
  // A job first seen in an event: read it, then apply the events that came meanwhile.
  const readJob = async (id, event) => {
    if (fetching.has(id)) { fetching.get(id).push(event); return; }
    fetching.set(id, []);
    let job = null;
    try { job = await getJson(`/jobs/${id}`); } catch (_) { /* deleted meanwhile */ }
    const later = fetching.get(id);
    fetching.delete(id);
    if (!job || abort.signal.aborted) return;
    jobs.set(id, job);
    show(id);
    readEpochs(id);
    later.forEach(apply);
  };
  const apply = event => {
    const d = event.data, job = jobs.get(d.job);
    if (event.event === 'deleted') {
      if (fetching.has(d.job)) fetching.get(d.job).push(event);
      jobs.delete(d.job);
      epochs.delete(d.job);
      show(d.job);
      return;
    }
    if (!job) { readJob(d.job, event); return; }
    if (event.event === 'status') {
      job.status = d.status;
      if (d.backend) job.backend = d.backend;
      if (d.error) job.error = d.error;
    } else if (event.event === 'step') {
      job.progress.step = Math.max(job.progress.step, d.step);
    } else if (event.event === 'epoch') {
      job.progress.epoch = Math.max(job.progress.epoch, d.epoch);
      if (job.progress.epochs && job.progress.epoch >= job.progress.epochs) job.progress.step = job.progress.steps;
      addEpochs(d.job, [d]);
    } else return;
    show(d.job);
  };
  const onEvent = event => { if (loaded) apply(event); else queued.push(event); };
  let streaming = false;
  // Every time the stream opens the jobs are read again: even a stream resumed with
  // Last-Event-ID does not replay deletions.
  const opened = async () => {
    streaming = true;
    table.dataset.live = 'events';
    live.textContent = 'live';
    loaded = false;
    try { await load(); } catch (_) { return; }
    loaded = true;
    queued.splice(0).forEach(apply);
  };
  const lost = () => { streaming = false; };
  watchAll(onEvent, opened, lost, abort.signal);
  // The fallback: once the stream has had a few seconds to open, and then every 30 s while it
  // is not open.
  await sleep(3000);
  while (!abort.signal.aborted) {
    if (!streaming) {
      table.dataset.live = 'polling';
      live.textContent = 'no event stream: updates every 30 s';
      await load().catch(() => {});
    }
    await sleep(FALLBACK_POLL_MS);
  }
}

// ---- a job ----------------------------------------------------------------------------------------

// Shows `message` in the job's error row, made when the job first has one.
function showError(message) {
  let row = document.getElementById('error');
  if (!row) {
    document.getElementById('facts').insertAdjacentHTML('beforeend', '<dt>error</dt><dd id="error" class="error"></dd>');
    row = document.getElementById('error');
  }
  row.textContent = message;
}

async function jobView(id) {
  const job = await getJson(`/jobs/${id}`);
  const family = modelFamily(job);
  const plots = EPOCH_PLOTS[family];
  view.innerHTML = `<h1>${esc(job.name || 'job')} <span class="status ${esc(job.status)}" id="status">${esc(job.status)}</span></h1>
    <dl id="facts"><dt>id</dt><dd>${esc(job.id)}</dd><dt>model</dt><dd>${esc(job.spec.model.kind)}</dd>
    <dt>backend</dt><dd id="backend">${esc(job.backend || job.spec.backend)}</dd></dl>
    <div class="charts"><div class="chart"><canvas id="step-chart"></canvas></div>
    <div class="chart"><canvas id="epoch-chart"></canvas></div></div>
    ${layersTable(job)}
    <h2>Checkpoints</h2><p id="checkpoints-error" class="error"></p>
    <table id="checkpoints"><thead><tr><th class="num">epoch</th><th class="num">step</th><th class="num">bytes</th>
    <th>sha256</th><th class="num">id</th><th></th></tr></thead><tbody></tbody></table>
    ${family === 'language' ? `<h2>Generate</h2><p><input id="prefix" value="the time traveller" size="40">
      <button id="generate">Generate</button></p><textarea id="generated" readonly></textarea>` : ''}
    ${family === 'classifier' ? `<h2>Predict</h2><div id="drop" class="drop" tabindex="0">drop a PNG or JPEG here,
      or <label><input type="file" id="image" accept="image/png,image/jpeg"> choose one</label></div>
      <table id="predicted"><tbody></tbody></table>` : ''}`;
  if (job.error) showError(job.error);
  const steps = lineChart(document.getElementById('step-chart'), 'step', 'loss');
  const epochs = lineChart(document.getElementById('epoch-chart'), 'epoch', plots.title, true);
  const checkpoints = () => showCheckpoints(id).catch(e => {
    const out = document.getElementById('checkpoints-error');
    if (out) out.textContent = e.message;
  });
  checkpoints();
  if (family === 'language') document.getElementById('generate').onclick = () => generate(id);
  if (family === 'classifier') dropBox(id);
  const abort = new AbortController();
  cleanup.push(() => abort.abort());
  follow(id, event => {
    const d = event.data;
    if (event.event === 'step') {
      steps.series('loss').data.push({ x: d.step, y: d.loss });
      steps.changed();
    } else if (event.event === 'epoch') {
      plotEpoch(epochs, d, plots.metrics);
    } else if (event.event === 'checkpoint') {
      checkpoints();
    } else if (event.event === 'status') {
      const status = document.getElementById('status');
      status.textContent = d.status;
      status.className = 'status ' + d.status;
      if (d.backend) document.getElementById('backend').textContent = d.backend;
      if (d.error) showError(d.error);
    }
  }, abort.signal);
}

// The model's layers with their output shapes and parameters, as the API resolved them for the
// job's data (a language model has none).
function layersTable(job) {
  if (!job.layers) return '';
  const rows = job.layers.map(l => `<tr><td class="num">${l.index}</td><td>${esc(l.kind)}</td>
    <td class="num">${l.output.join('×')}</td><td class="num">${l.parameters.toLocaleString('en')}</td></tr>`).join('');
  return `<h2>Layers</h2><table id="layers"><thead><tr><th class="num">layer</th><th>kind</th>
    <th class="num">output</th><th class="num">parameters</th></tr></thead><tbody>${rows}</tbody>
    <tfoot><tr><td></td><td>total</td><td></td><td class="num">${job.parameters.toLocaleString('en')}</td></tr></tfoot></table>`;
}

// A job's checkpoints: the epoch it ends (the job's own numbering) first, the server-wide id it
// is downloaded by last.
async function showCheckpoints(id) {
  const list = await getJson(`/jobs/${id}/checkpoints`);
  const body = document.querySelector('#checkpoints tbody');
  if (!body) return;
  body.innerHTML = list.map(c => `<tr data-checkpoint="${c.id}"><td class="num">${c.epoch}</td><td class="num">${c.step}</td>
      <td class="num">${c.bytes.toLocaleString('en')}</td><td><code title="${esc(c.sha256)}">${esc(c.sha256.slice(0, 16))}…</code></td>
      <td class="num">${c.id}</td><td><a href="#" data-checkpoint="${c.id}">download</a>
      <a href="#" data-checkpoint="${c.id}" data-format="safetensors" title="weights under PyTorch's names">safetensors</a></td></tr>`).join('');
  body.querySelectorAll('a[data-checkpoint]').forEach(a => {
    a.onclick = e => { e.preventDefault(); download(id, a.dataset.checkpoint, a.dataset.format); };
  });
}

// Downloads go through fetch so that the key is sent, then are saved from a blob.
async function download(id, checkpoint, format) {
  const query = format ? `?format=${format}` : '';
  const blob = await (await api(`/jobs/${id}/checkpoints/${checkpoint}${query}`)).blob();
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = `${id}-checkpoint-${checkpoint}.${format || 'bpk'}`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// The drop-an-image box of a classifier's page: the image goes to /predict as it is, and the
// likeliest classes come back with their probabilities.
function dropBox(id) {
  const box = document.getElementById('drop');
  const predictFile = async file => {
    const out = document.querySelector('#predicted tbody');
    out.innerHTML = '<tr><td>…</td></tr>';
    try {
      const r = await api(`/jobs/${id}/predict`, { method: 'POST', headers: { 'Content-Type': file.type }, body: file });
      const top = (await r.json()).predictions[0].top;
      out.innerHTML = top.map(c => `<tr><td>${esc(c.class)}</td><td class="num">${(100 * c.probability).toFixed(1)} %</td></tr>`).join('');
    } catch (e) {
      out.innerHTML = `<tr><td class="error">${esc(e.message)}</td></tr>`;
    }
  };
  box.ondragover = e => { e.preventDefault(); box.classList.add('over'); };
  box.ondragleave = () => box.classList.remove('over');
  box.ondrop = e => {
    e.preventDefault();
    box.classList.remove('over');
    if (e.dataTransfer.files.length) predictFile(e.dataTransfer.files[0]);
  };
  document.getElementById('image').onchange = e => { if (e.target.files.length) predictFile(e.target.files[0]); };
}

async function generate(id) {
  const out = document.getElementById('generated');
  out.value = '…';
  try {
    const body = JSON.stringify({ prefix: document.getElementById('prefix').value, max_tokens: 100 });
    const r = await api(`/jobs/${id}/generate`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    const g = await r.json();
    out.value = g.prompt + g.text;
  } catch (e) {
    out.value = e.message;
  }
}

// ---- compare ----------------------------------------------------------------------------------------

// Each job's headline epoch metrics: a classifier's training loss and test accuracy, a language
// model's (validation) perplexity.
const COMPARED = {
  classifier: { train_loss: 'y', test_accuracy: 'accuracy' },
  language: { validation_perplexity: 'y', perplexity: 'y' },
};

async function compareView(ids) {
  if (!ids.length) {
    view.innerHTML = '<h1>Compare</h1><p>Choose jobs in the <a href="#/">jobs table</a>, then "Compare chosen jobs".</p>';
    return;
  }
  const jobs = await Promise.all(ids.map(id => getJson(`/jobs/${id}`)));
  view.innerHTML = `<h1>Compare</h1><p>${jobs.map(j => `<a href="#/jobs/${esc(j.id)}">${esc(j.name || j.id.slice(0, 8))}</a>`).join(' · ')}</p>
    <div class="charts"><div class="chart"><canvas id="compare-steps"></canvas></div>
    <div class="chart"><canvas id="compare-epochs"></canvas></div></div>`;
  const families = new Set(jobs.map(modelFamily));
  const yTitle = families.size > 1 ? 'loss, perplexity' : EPOCH_PLOTS[[...families][0]].title;
  const steps = lineChart(document.getElementById('compare-steps'), 'step', 'loss');
  const epochs = lineChart(document.getElementById('compare-epochs'), 'epoch', yTitle, true);
  const abort = new AbortController();
  cleanup.push(() => abort.abort());
  const names = new Set(jobs.map(j => j.name || j.id));
  jobs.forEach((job, i) => {
    const name = job.name || job.id.slice(0, 8);
    const label = name.length > 28 ? name.slice(0, 27).trimEnd() + '…' : name;
    const unique = names.size === jobs.length ? label : `${label} (${i + 1})`;
    const colour = COLOURS[i % COLOURS.length];
    const family = modelFamily(job);
    follow(job.id, event => {
      const d = event.data;
      if (event.event === 'step') {
        steps.series(unique + ' loss', 'y', colour).data.push({ x: d.step, y: d.loss });
        steps.changed();
      } else if (event.event === 'epoch') {
        const metrics = Object.assign({}, COMPARED[family]);
        // One perplexity per job: the validation one when the job holds out a tail.
        if (typeof d.validation_perplexity === 'number') delete metrics.perplexity;
        plotEpoch(epochs, d, metrics, unique + ' ', colour);
      }
    }, abort.signal);
  });
}

// ---- routing ------------------------------------------------------------------------------------

async function route() {
  clearView();
  document.getElementById('forget-key').hidden = !sessionStorage.getItem(KEY);
  const hash = location.hash.replace(/^#/, '') || '/';
  try {
    const job = hash.match(/^\/jobs\/([0-9a-f-]{36})$/);
    if (job) await jobView(job[1]);
    else if (hash.startsWith('/compare')) {
      const ids = (new URLSearchParams(hash.split('?')[1] || '').get('ids') || '').split(',').filter(Boolean);
      await compareView(ids);
    } else await jobsView();
  } catch (e) {
    // Without a key the form says what is needed.
    if (e.status !== 401) view.insertAdjacentHTML('beforeend', `<p class="error">${esc(e.message)}</p>`);
  }
}
window.addEventListener('hashchange', route);
route();
