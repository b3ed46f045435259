// kiln's dashboard: the jobs table, a job's live curves, checkpoints and generation, and a
// compare view that overlays the curves of chosen jobs. Plain JavaScript against kiln's own API;
// charts are Chart.js (vendored). Live data comes from GET /jobs/{id}/events, read with fetch
// because EventSource cannot send the API key.
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
    throw new Error('an API key is needed');
  }
  if (!response.ok) {
    let detail = response.status + ' ' + response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}
const getJson = async path => (await api(path)).json();

function askForKey(message) {
  keyForm.hidden = false;
  document.getElementById('key-error').textContent = message;
  document.getElementById('key').focus();
}
keyForm.addEventListener('submit', e => {
  e.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById('key').value.trim());
  keyForm.hidden = true;
  route();
});
document.getElementById('forget-key').addEventListener('click', () => { sessionStorage.removeItem(KEY); route(); });

// ---- the event stream -------------------------------------------------------------------------

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

// Calls onEvent for every event of job `id`, history first, until the stream ends (the job
// finished or was deleted) or `signal` aborts; reconnects with Last-Event-ID if it drops.
async function follow(id, onEvent, signal) {
  let last = null;
  for (let attempt = 0; attempt < 30 && !signal.aborted; attempt++) {
    try {
      const headers = last ? { 'Last-Event-ID': last } : {};
      const reader = (await api(`/jobs/${id}/events`, { headers, signal })).body.getReader();
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
          if (!event) continue;
          if (event.id) last = event.id;
          onEvent(event);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      await sleep(2000);
    }
  }
}

// ---- charts -------------------------------------------------------------------------------------

const COLOURS = ['#c2410c', '#2563eb', '#16a34a', '#9333ea', '#0891b2', '#ca8a04', '#db2777', '#4b5563'];

// A line chart over steps or epochs (`perEpoch`: whole-number ticks and visible points).
function lineChart(canvas, xTitle, perEpoch = false) {
  const x = { type: 'linear', title: { display: true, text: xTitle } };
  if (perEpoch) x.ticks = { stepSize: 1, precision: 0 };
  const chart = new Chart(canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      animation: false, maintainAspectRatio: false, normalized: true, parsing: false,
      elements: { point: { radius: perEpoch ? 3 : 0 }, line: { borderWidth: 1.5 } },
      interaction: { mode: 'nearest', intersect: false },
      scales: { x, y: { type: 'linear', title: { display: true, text: perEpoch ? 'loss, perplexity' : 'loss' } } },
    },
  });
  let pending = false;
  // The series named `label`, made on first use: accuracies on a 0-1 axis at the right, dashed;
  // `colour` keeps one job's series alike in the compare view.
  chart.series = (label, accuracy = false, colour = null) => {
    let set = chart.data.datasets.find(d => d.label === label);
    if (!set) {
      colour = colour || COLOURS[chart.data.datasets.length % COLOURS.length];
      set = { label, data: [], borderColor: colour, backgroundColor: colour, yAxisID: accuracy ? 'y1' : 'y' };
      if (accuracy) set.borderDash = [6, 3];
      if (accuracy && !chart.options.scales.y1) {
        chart.options.scales.y1 = { type: 'linear', position: 'right', min: 0, max: 1,
          title: { display: true, text: 'accuracy' }, grid: { drawOnChartArea: false } };
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

const SKIP = ['epoch', 'seconds', 'examples_per_sec', 'tokens_per_sec', 'grad_norm_max'];
function plotEpoch(chart, row, prefix = '', colour = null) {
  for (const [name, value] of Object.entries(row)) {
    if (SKIP.includes(name) || typeof value !== 'number') continue;
    const accuracy = name.includes('accuracy');
    chart.series(prefix + name, accuracy, colour).data.push({ x: row.epoch, y: value });
  }
  chart.changed();
}

// ---- views ----------------------------------------------------------------------------------------

function best(metrics) {
  const rows = metrics.epochs || [];
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

async function jobsView() {
  view.innerHTML = `<h1>Jobs</h1>
    <p><button id="compare-chosen">Compare chosen jobs</button> <span class="muted">newest first; updates every 2 s</span></p>
    <table id="jobs"><thead><tr><th></th><th>Job</th><th>Status</th><th>Model</th><th>Backend</th>
    <th>Progress</th><th>Best</th></tr></thead><tbody></tbody></table>`;
  const chosen = new Set();
  const bests = new Map();
  document.getElementById('compare-chosen').onclick = () => { location.hash = '#/compare?ids=' + [...chosen].join(','); };
  const body = view.querySelector('tbody');
  body.addEventListener('change', e => { if (e.target.checked) chosen.add(e.target.value); else chosen.delete(e.target.value); });
  let live = true;
  cleanup.push(() => { live = false; });
  while (live) {
    const jobs = await allJobs();
    for (const job of jobs) {
      const known = bests.get(job.id);
      if (known === undefined || !known.final) {
        const metrics = await getJson(`/jobs/${job.id}/metrics?limit=1`).catch(() => ({ epochs: [] }));
        bests.set(job.id, { text: best(metrics), final: FINAL.includes(job.status) });
      }
    }
    if (!live) return;
    body.innerHTML = jobs.map(job => {
      const p = job.progress, share = p.steps ? p.step / p.steps : 0;
      return `<tr data-id="${esc(job.id)}">
        <td><input type="checkbox" value="${esc(job.id)}" ${chosen.has(job.id) ? 'checked' : ''}></td>
        <td><a href="#/jobs/${esc(job.id)}">${esc(job.name || job.id.slice(0, 8))}</a></td>
        <td><span class="status ${esc(job.status)}">${esc(job.status)}</span></td>
        <td>${esc(job.spec.model.kind)}</td><td>${esc(job.backend || job.spec.backend)}</td>
        <td><progress max="1" value="${share}"></progress> ${(share * 100).toFixed(0)}%</td>
        <td>${esc(bests.get(job.id)?.text)}</td></tr>`;
    }).join('');
    await sleep(2000);
  }
}

async function jobView(id) {
  const job = await getJson(`/jobs/${id}`);
  const language = job.spec.data.num_steps !== undefined;
  view.innerHTML = `<h1>${esc(job.name || 'job')} <span class="status ${esc(job.status)}" id="status">${esc(job.status)}</span></h1>
    <dl><dt>id</dt><dd>${esc(job.id)}</dd><dt>model</dt><dd>${esc(job.spec.model.kind)}</dd>
    <dt>backend</dt><dd id="backend">${esc(job.backend || job.spec.backend)}</dd>
    <dt>error</dt><dd id="error" class="error">${esc(job.error)}</dd></dl>
    <div class="charts"><div class="chart"><canvas id="step-chart"></canvas></div>
    <div class="chart"><canvas id="epoch-chart"></canvas></div></div>
    <h2>Checkpoints</h2><table id="checkpoints"><tbody></tbody></table>
    ${language ? `<h2>Generate</h2><p><input id="prefix" value="the time traveller" size="40">
      <button id="generate">Generate</button></p><textarea id="generated" readonly></textarea>` : ''}`;
  const steps = lineChart(document.getElementById('step-chart'), 'step');
  const epochs = lineChart(document.getElementById('epoch-chart'), 'epoch', true);
  const checkpoints = () => showCheckpoints(id).catch(e => { document.getElementById('error').textContent = e.message; });
  checkpoints();
  if (language) document.getElementById('generate').onclick = () => generate(id);
  const abort = new AbortController();
  cleanup.push(() => abort.abort());
  follow(id, event => {
    const d = event.data;
    if (event.event === 'step') {
      steps.series('loss').data.push({ x: d.step, y: d.loss });
      steps.changed();
    } else if (event.event === 'epoch') {
      plotEpoch(epochs, d);
    } else if (event.event === 'checkpoint') {
      checkpoints();
    } else if (event.event === 'status') {
      const status = document.getElementById('status');
      status.textContent = d.status;
      status.className = 'status ' + d.status;
      if (d.backend) document.getElementById('backend').textContent = d.backend;
      if (d.error) document.getElementById('error').textContent = d.error;
    }
  }, abort.signal);
}

async function showCheckpoints(id) {
  const list = await getJson(`/jobs/${id}/checkpoints`);
  const body = document.querySelector('#checkpoints tbody');
  if (!body) return;
  body.innerHTML = '<tr><th>id</th><th>epoch</th><th>step</th><th>bytes</th><th>sha256</th><th></th></tr>' +
    list.map(c => `<tr><td>${c.id}</td><td class="num">${c.epoch}</td><td class="num">${c.step}</td>
      <td class="num">${c.bytes}</td><td><code>${esc(c.sha256.slice(0, 16))}…</code></td>
      <td><a href="#" data-checkpoint="${c.id}">download</a></td></tr>`).join('');
  body.querySelectorAll('a[data-checkpoint]').forEach(a => { a.onclick = e => { e.preventDefault(); download(id, a.dataset.checkpoint); }; });
}

// Downloads go through fetch so that the key is sent, then are saved from a blob.
async function download(id, checkpoint) {
  const blob = await (await api(`/jobs/${id}/checkpoints/${checkpoint}`)).blob();
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = `${id}-checkpoint-${checkpoint}.bpk`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
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

async function compareView(ids) {
  if (!ids.length) {
    view.innerHTML = '<h1>Compare</h1><p>Choose jobs in the <a href="#/">jobs table</a>, then "Compare chosen jobs".</p>';
    return;
  }
  const jobs = await Promise.all(ids.map(id => getJson(`/jobs/${id}`)));
  view.innerHTML = `<h1>Compare</h1><p>${jobs.map(j => `<a href="#/jobs/${esc(j.id)}">${esc(j.name || j.id.slice(0, 8))}</a>`).join(' · ')}</p>
    <div class="charts"><div class="chart"><canvas id="compare-steps"></canvas></div>
    <div class="chart"><canvas id="compare-epochs"></canvas></div></div>`;
  const steps = lineChart(document.getElementById('compare-steps'), 'step');
  const epochs = lineChart(document.getElementById('compare-epochs'), 'epoch', true);
  const abort = new AbortController();
  cleanup.push(() => abort.abort());
  jobs.forEach((job, i) => {
    const name = job.name || job.id.slice(0, 8);
    const label = name.length > 28 ? name.slice(0, 27).trimEnd() + '…' : name;
    const names = new Set(jobs.map(j => j.name || j.id));
    const unique = names.size === jobs.length ? label : `${label} (${i + 1})`;
    const colour = COLOURS[i % COLOURS.length];
    follow(job.id, event => {
      const d = event.data;
      if (event.event === 'step') {
        steps.series(unique + ' loss', false, colour).data.push({ x: d.step, y: d.loss });
        steps.changed();
      } else if (event.event === 'epoch') {
        const keep = {};
        for (const name of ['test_accuracy', 'train_loss', 'validation_perplexity']) if (name in d) keep[name] = d[name];
        plotEpoch(epochs, Object.assign({ epoch: d.epoch }, keep), unique + ' ', colour);
      }
    }, abort.signal);
  });
}

// ---- routing ------------------------------------------------------------------------------------

async function route() {
  cleanup.forEach(f => f());
  cleanup = [];
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
    view.insertAdjacentHTML('beforeend', `<p class="error">${esc(e.message)}</p>`);
  }
}
window.addEventListener('hashchange', route);
route();
