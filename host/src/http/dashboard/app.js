// The Tessera dashboard's script (served by host/src/http/dashboard.rs).
//
// Plain JavaScript, no library and no build step. Every 1.5 s it reads the host's own
// endpoints (`/health`, `/plugins`, `/projections`, `/metrics`, and now and then
// `/projections/{name}/parked`), follows the log with `/events/stream` (server-sent
// events) or, on a host without it, by polling `/events?after=N`, and redraws. It only
// ever talks to the host that served it (the page's content security policy says so).
// Charts are SVG drawn here; quantiles are estimated from Prometheus histogram
// buckets the way PromQL's histogram_quantile does.
'use strict';

(() => {
  /** How often the endpoints are read. */
  const POLL_MS = 1500;
  /** How much history the charts show. */
  const WINDOW_S = 300;
  /** The span the headline rates and quantiles are computed over. */
  const RECENT_S = 10;
  /** The span one chart point's quantile is computed over (rates use one poll). */
  const LATENCY_SPAN_S = 6;
  /** How many of the newest events the page lists. */
  const MAX_EVENTS = 50;
  /** Parked events are counted every this many polls (one request per projection). */
  const PARKED_EVERY = 3;
  /** A request that takes longer than this counts as failed. */
  const REQUEST_TIMEOUT_MS = 5000;
  /** After the event stream is refused, how long before trying it again. */
  const STREAM_RETRY_MS = 30000;

  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children (text or elements). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    return el;
  }

  // ---------------------------------------------------------------- requests

  /** An answer that was not 2xx; the host was reached. */
  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function request(path) {
    const options = { cache: 'no-store' };
    if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) {
      options.signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    }
    const response = await fetch(path, options);
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        if (body && body.error && body.error.message) message = body.error.message;
      } catch (_) {
        // Not the JSON error body: the status line says enough.
      }
      throw new HttpError(response.status, message);
    }
    return response;
  }

  const getJson = async (path) => (await request(path)).json();
  const getText = async (path) => (await request(path)).text();

  // ---------------------------------------------------------------- formatting

  const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

  function fmtCount(n) {
    return n === null || n === undefined || Number.isNaN(n) ? '–' : integer.format(n);
  }

  function fmtRate(r) {
    if (r === null || r === undefined || !Number.isFinite(r)) return '–';
    if (r === 0) return '0';
    if (r < 10) return r.toFixed(2);
    if (r < 100) return r.toFixed(1);
    return integer.format(r);
  }

  function fmtSeconds(sec) {
    if (sec === null || sec === undefined || !Number.isFinite(sec)) return '–';
    if (sec < 0.001) return `${(sec * 1e6).toFixed(sec < 1e-5 ? 1 : 0)} µs`;
    if (sec < 1) return `${(sec * 1000).toFixed(sec < 0.01 ? 2 : sec < 0.1 ? 1 : 0)} ms`;
    return `${sec.toFixed(2)} s`;
  }

  function fmtDuration(sec) {
    if (!Number.isFinite(sec) || sec < 0) return '–';
    if (sec < 1) return '< 1 s';
    if (sec < 60) return `${Math.round(sec)} s`;
    if (sec < 3600) return `${Math.floor(sec / 60)} min ${Math.round(sec % 60)} s`;
    return `${Math.floor(sec / 3600)} h ${Math.round((sec % 3600) / 60)} min`;
  }

  function fmtAgo(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return iso || '–';
    const sec = (Date.now() - t) / 1000;
    if (sec < 5) return 'just now';
    return `${fmtDuration(sec)} ago`;
  }

  function fmtTime(iso) {
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return iso || '';
    const pad = (n, w = 2) => String(n).padStart(w, '0');
    return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
  }

  function shortDigest(digest) {
    if (!digest) return '–';
    const hex = digest.includes(':') ? digest.slice(digest.indexOf(':') + 1) : digest;
    return hex.slice(0, 12);
  }

  function badge(text, tone) {
    return h('span', { class: `badge badge-${tone}` }, text);
  }

  /** Marks a section as loading, ready, empty, error or absent (for people and tests). */
  function setSection(id, state, note) {
    const section = $(id);
    section.dataset.state = state;
    const noteEl = $(`${id}-note`);
    if (noteEl && note !== undefined) noteEl.textContent = note;
  }

  // ---------------------------------------------------------------- connection

  let lastContact = null;

  function setConnection(reachable, detail) {
    const pill = $('connection');
    const banner = $('offline-banner');
    if (reachable) {
      lastContact = Date.now();
      pill.textContent = 'connected';
      pill.className = 'pill pill-ok';
      pill.dataset.state = 'connected';
      banner.hidden = true;
      document.body.classList.remove('offline');
    } else {
      pill.textContent = 'host unreachable';
      pill.className = 'pill pill-bad';
      pill.dataset.state = 'unreachable';
      banner.hidden = false;
      document.body.classList.add('offline');
      const since = lastContact ? ` Last answer ${fmtDuration((Date.now() - lastContact) / 1000)} ago.` : '';
      $('offline-detail').textContent = `${detail || 'No answer.'}${since} Retrying every ${POLL_MS / 1000} s.`;
    }
  }

  // ---------------------------------------------------------------- Prometheus text

  function parseValue(text) {
    if (text === '+Inf' || text === 'Inf') return Infinity;
    if (text === '-Inf') return -Infinity;
    if (text === 'NaN') return NaN;
    return Number(text);
  }

  function unescapeLabel(value) {
    return value.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
  }

  /** The samples of a Prometheus text exposition: `[{name, labels, value}]`. */
  function parsePrometheus(text) {
    const samples = [];
    const labelRe = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
      if (!nameMatch) continue;
      const name = nameMatch[0];
      let i = name.length;
      const labels = {};
      if (line[i] === '{') {
        labelRe.lastIndex = i + 1;
        let m;
        let end = i + 1;
        while ((m = labelRe.exec(line))) {
          labels[m[1]] = unescapeLabel(m[2]);
          end = labelRe.lastIndex;
        }
        while (line[end] === ' ') end++;
        if (line[end] !== '}') continue; // Malformed: skip the line, keep the rest.
        i = end + 1;
      }
      const fields = line.slice(i).trim().split(/\s+/);
      const value = parseValue(fields[0]);
      if (fields[0] === undefined || (Number.isNaN(value) && fields[0] !== 'NaN')) continue;
      samples.push({ name, labels, value });
    }
    return samples;
  }

  /** The sum of a counter family over the label sets `keep` accepts. */
  function sumOf(samples, name, keep) {
    let total = 0;
    let found = false;
    for (const x of samples) {
      if (x.name === name && (!keep || keep(x.labels)) && Number.isFinite(x.value)) {
        total += x.value;
        found = true;
      }
    }
    return found ? total : null;
  }

  /**
   * A histogram family summed over its label sets: cumulative buckets sorted by bound
   * (`[{le, count}]`, the last one `+Inf`). Without buckets (an exporter that renders
   * summaries), the largest reported 0.5 and 0.99 quantiles instead.
   */
  function histogramOf(samples, base) {
    const byLe = new Map();
    const quantiles = { 0.5: null, 0.99: null };
    for (const x of samples) {
      if (x.name === `${base}_bucket` && x.labels.le !== undefined) {
        const le = parseValue(x.labels.le);
        byLe.set(le, (byLe.get(le) || 0) + x.value);
      } else if (x.name === base && x.labels.quantile !== undefined && Number.isFinite(x.value)) {
        const q = Number(x.labels.quantile);
        if (q in quantiles) quantiles[q] = Math.max(quantiles[q] ?? 0, x.value);
      }
    }
    const buckets = [...byLe.entries()].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
    return { buckets: buckets.length ? buckets : null, quantiles };
  }

  /** The bucket counts added between two scrapes (a counter reset counts from zero). */
  function bucketDelta(now, before) {
    if (!now) return null;
    if (!before) return now;
    const old = new Map(before.map((b) => [b.le, b.count]));
    let reset = false;
    const delta = now.map((b) => {
      const d = b.count - (old.get(b.le) || 0);
      if (d < 0) reset = true;
      return { le: b.le, count: d };
    });
    return reset ? now : delta;
  }

  /** PromQL's histogram_quantile: linear interpolation inside the bucket holding the rank. */
  function quantile(q, buckets) {
    if (!buckets || !buckets.length) return null;
    const total = buckets[buckets.length - 1].count;
    if (!(total > 0)) return null;
    const rank = q * total;
    let prevLe = 0;
    let prevCount = 0;
    for (const b of buckets) {
      if (b.count >= rank) {
        if (b.le === Infinity) return prevLe;
        const inBucket = b.count - prevCount;
        if (inBucket <= 0) return b.le;
        return prevLe + ((b.le - prevLe) * (rank - prevCount)) / inBucket;
      }
      prevLe = b.le;
      prevCount = b.count;
    }
    return prevLe;
  }

  const NOT_OK = (labels) => labels.outcome !== 'ok' && labels.outcome !== 'replayed';

  function summarize(samples) {
    return {
      commands: sumOf(samples, 'tessera_commands_total'),
      commandsNotOk: sumOf(samples, 'tessera_commands_total', NOT_OK),
      queries: sumOf(samples, 'tessera_queries_total'),
      queryErrors: sumOf(samples, 'tessera_queries_total', (l) => l.outcome === 'error'),
      queryHits: sumOf(samples, 'tessera_queries_total', (l) => l.cache === 'hit'),
      commandLatency: histogramOf(samples, 'tessera_command_duration_seconds'),
      queryLatency: histogramOf(samples, 'tessera_query_duration_seconds'),
    };
  }

  // ---------------------------------------------------------------- metrics history

  /** Scrapes kept for the charts: `[{t, m}]`, oldest first. */
  const scrapes = [];
  let metricsState = 'loading';

  function counterRate(a, b, key) {
    const dt = (b.t - a.t) / 1000;
    if (dt <= 0 || b.m[key] === null || a.m[key] === null) return null;
    const d = b.m[key] - a.m[key];
    return (d < 0 ? b.m[key] : d) / dt;
  }

  /** The scrape at least `seconds` older than the one at `index` (or the oldest). */
  function earlier(index, seconds) {
    const t = scrapes[index].t - seconds * 1000;
    let j = index - 1;
    while (j > 0 && scrapes[j].t > t) j--;
    return j >= 0 ? j : null;
  }

  function latencyBetween(j, i, key, q) {
    const now = scrapes[i].m[key];
    if (now.buckets) {
      const delta = bucketDelta(now.buckets, j === null ? null : scrapes[j].m[key].buckets);
      return quantile(q, delta);
    }
    return now.quantiles[q];
  }

  function series(key, fn) {
    const points = [];
    for (let i = 1; i < scrapes.length; i++) points.push({ t: scrapes[i].t, v: fn(i, key) });
    return points;
  }

  function renderMetrics() {
    const absent = metricsState === 'absent';
    $('metrics-empty').hidden = !absent;
    $('charts').hidden = absent;
    const tiles = [
      ['commands-rate', 'commands-sub'],
      ['queries-rate', 'queries-sub'],
      ['commands-latency', 'commands-latency-sub'],
      ['queries-latency', 'queries-latency-sub'],
    ];
    if (absent) {
      for (const [value, sub] of tiles) {
        $(value).textContent = 'no metrics';
        $(value).dataset.value = '';
        $(value).classList.add('muted');
        $(sub).textContent = '/metrics answers 404';
      }
      return;
    }
    if (!scrapes.length) return;
    for (const [value] of tiles) $(value).classList.remove('muted');
    const last = scrapes.length - 1;
    const latest = scrapes[last].m;
    const from = earlier(last, RECENT_S);
    const span = from === null ? null : scrapes[from];
    const rate = (key) => (span && span !== scrapes[last] ? counterRate(span, scrapes[last], key) : null);

    const commandsRate = rate('commands');
    $('commands-rate').textContent = commandsRate === null ? '…' : fmtRate(commandsRate);
    $('commands-rate').dataset.value = commandsRate === null ? '' : String(commandsRate);
    $('commands-sub').textContent = latest.commands === null
      ? 'no command yet'
      : `${fmtCount(latest.commands)} total · ${fmtCount(latest.commandsNotOk ?? 0)} not ok`;

    const queriesRate = rate('queries');
    $('queries-rate').textContent = queriesRate === null ? '…' : fmtRate(queriesRate);
    $('queries-rate').dataset.value = queriesRate === null ? '' : String(queriesRate);
    const hitRatio = latest.queries ? `${Math.round((100 * (latest.queryHits || 0)) / latest.queries)}% cache hits` : '';
    $('queries-sub').textContent = latest.queries === null
      ? 'no query yet'
      : `${fmtCount(latest.queries)} total · ${fmtCount(latest.queryErrors ?? 0)} errors${hitRatio ? ` · ${hitRatio}` : ''}`;

    for (const [key, el] of [['commandLatency', 'commands-latency'], ['queryLatency', 'queries-latency']]) {
      const p50 = latencyBetween(from, last, key, 0.5);
      const p99 = latencyBetween(from, last, key, 0.99);
      $(el).textContent = p50 === null ? '–' : `${fmtSeconds(p50)} / ${fmtSeconds(p99)}`;
      $(`${el}-sub`).textContent = p50 === null
        ? 'no traffic in the last 10 s'
        : latest[key].buckets ? 'last 10 s, from histogram buckets' : 'from the exporter\'s summary';
    }

    drawChart($('throughput-chart'), [
      { name: 'commands/s', cls: 's1', points: series('commands', (i, k) => counterRate(scrapes[i - 1], scrapes[i], k)) },
      { name: 'queries/s', cls: 's2', points: series('queries', (i, k) => counterRate(scrapes[i - 1], scrapes[i], k)) },
    ], fmtRate, $('throughput-legend'));
    const lat = (q) => (i, k) => latencyBetween(earlier(i, LATENCY_SPAN_S), i, k, q);
    drawChart($('latency-chart'), [
      { name: 'command p50', cls: 's1 thin', points: series('commandLatency', lat(0.5)) },
      { name: 'command p99', cls: 's1', points: series('commandLatency', lat(0.99)) },
      { name: 'query p50', cls: 's2 thin', points: series('queryLatency', lat(0.5)) },
      { name: 'query p99', cls: 's2', points: series('queryLatency', lat(0.99)) },
    ], fmtSeconds, $('latency-legend'));
  }

  async function pollMetrics() {
    try {
      const text = await getText('/metrics');
      const now = Date.now();
      scrapes.push({ t: now, m: summarize(parsePrometheus(text)) });
      while (scrapes.length > 2 && scrapes[1].t < now - (WINDOW_S + 10) * 1000) scrapes.shift();
      metricsState = 'ready';
      setSection('metrics', 'ready');
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) {
        metricsState = 'absent';
        setSection('metrics', 'absent');
      } else if (error instanceof HttpError) {
        setSection('metrics', 'error', `/metrics: ${error.message}`);
      }
      // A network failure is the connection's business; the history stays as it was.
      if (!(error instanceof HttpError)) throw error;
    }
  }

  // ---------------------------------------------------------------- charts

  function niceCeil(max) {
    if (!(max > 0)) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(max)));
    for (const m of [1, 2, 2.5, 5, 10]) if (max <= m * exp) return m * exp;
    return 10 * exp;
  }

  /** A line chart of the last WINDOW_S seconds; gaps where a value is unknown. */
  function drawChart(svg, lines, format, legend) {
    const width = Math.max(svg.clientWidth || 0, 300);
    const height = Math.max(svg.clientHeight || 0, 160);
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    const pad = { left: 64, right: 12, top: 10, bottom: 24 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const now = Date.now();
    const t0 = now - WINDOW_S * 1000;
    let max = 0;
    for (const line of lines) {
      for (const p of line.points) if (p.t >= t0 && Number.isFinite(p.v)) max = Math.max(max, p.v);
    }
    const top = niceCeil(max);
    const x = (t) => pad.left + ((t - t0) / (WINDOW_S * 1000)) * plotW;
    const y = (v) => pad.top + plotH - (v / top) * plotH;
    const parts = [];
    for (let k = 0; k <= 4; k++) {
      const v = (top * k) / 4;
      parts.push(s('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
      const label = s('text', { class: 'axis', x: pad.left - 8, y: y(v) + 4, 'text-anchor': 'end' });
      label.textContent = k === 0 ? '0' : max > 0 ? format(v) : '';
      parts.push(label);
    }
    for (let m = 0; m <= WINDOW_S / 60; m++) {
      const t = now - m * 60000;
      const label = s('text', { class: 'axis', x: x(t), y: height - 6, 'text-anchor': m === 0 ? 'end' : 'middle' });
      label.textContent = m === 0 ? 'now' : `−${m} min`;
      parts.push(label);
    }
    for (const line of lines) {
      let d = '';
      let pen = false;
      let lastPoint = null;
      for (const p of line.points) {
        if (p.t < t0 || !Number.isFinite(p.v)) {
          pen = false;
          continue;
        }
        d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
        pen = true;
        lastPoint = p;
      }
      if (d) parts.push(s('path', { class: `line ${line.cls}`, d }));
      if (lastPoint) parts.push(s('circle', { class: `dot ${line.cls}`, cx: x(lastPoint.t), cy: y(lastPoint.v), r: 2.5 }));
    }
    svg.replaceChildren(...parts);
    legend.replaceChildren(...lines.map((line) => {
      const current = [...line.points].reverse().find((p) => Number.isFinite(p.v));
      return h('span', { class: 'key' }, h('span', { class: `swatch ${line.cls}` }), `${line.name} `,
        h('strong', {}, current ? format(current.v) : '–'));
    }));
  }

  // ---------------------------------------------------------------- plugins

  const KIND_LABEL = { 'command-handler': 'command handler', projection: 'projection', 'query-handler': 'query handler' };
  const STATUS_TONE = { active: 'ok', stale: 'warn', failed: 'bad', compiling: 'info' };

  function renderPlugins(listing) {
    const plugins = (listing.plugins || []).slice().sort((a, b) =>
      ((a.plugin && a.plugin.name) || a.file).localeCompare((b.plugin && b.plugin.name) || b.file));
    const rows = plugins.map((p) => {
      const d = p.plugin || {};
      const name = d.name || p.file;
      const handles = (d.handles || []).join(', ');
      return h('tr', { 'data-testid': 'plugin-row', 'data-name': name, 'data-kind': d.kind || '', 'data-status': p.status },
        h('td', {}, h('div', { class: 'strong' }, name), h('div', { class: 'small muted', title: handles }, p.file + (handles ? ` · ${handles}` : ''))),
        h('td', { 'data-field': 'kind' }, d.kind ? KIND_LABEL[d.kind] || d.kind : '–',
          d.mode ? h('span', { class: 'tag' }, d.mode) : null),
        h('td', {}, d.version || '–', d.contract ? h('div', { class: 'small muted' }, `contract ${d.contract}`) : null),
        h('td', { class: 'mono', title: p.digest || '' }, shortDigest(p.digest)),
        h('td', {}, badge(p.status, STATUS_TONE[p.status] || 'idle')),
        h('td', { class: 'small', title: p.loaded_at || '' }, p.loaded_at ? fmtAgo(p.loaded_at) : '–',
          p.compiled_from_cache ? h('div', { class: 'muted' }, 'from cache') : null,
          p.compiling_since ? h('div', { class: 'muted', title: p.compiling_since }, `compiling, started ${fmtAgo(p.compiling_since)}`) : null),
        h('td', { class: 'error-text' }, p.last_error || ''));
    });
    $('plugins-body').replaceChildren(...rows);
    $('plugins-empty').hidden = rows.length > 0;
    const failing = plugins.filter((p) => p.status !== 'active').length;
    setSection('plugins', rows.length ? 'ready' : 'empty',
      `${rows.length} file${rows.length === 1 ? '' : 's'}${failing ? ` · ${failing} not active` : ''}`);
  }

  // ---------------------------------------------------------------- projections

  const ROLE_ORDER = { active: 0, building: 1, standby: 2 };
  const ROLE_TONE = { active: 'ok', building: 'info', standby: 'idle' };
  const STATE_TONE = { live: 'ok', catching_up: 'info', starting: 'idle', failed: 'bad', stopped: 'idle' };
  /** Checkpoints seen per version, to estimate a catch-up's rate: key -> [{t, c}]. */
  const progressSeen = new Map();
  /** Parked events per projection name (its active version). */
  const parkedCount = new Map();
  let lastProjections = null;

  function projectionKey(p) {
    return `${p.name}@${p.version}.${p.generation}`;
  }

  /** Seconds left at the rate the checkpoint moved over the last polls (or the host's estimate). */
  function timeLeft(p) {
    const seen = progressSeen.get(projectionKey(p)) || [];
    const toGo = p.lag_events;
    if (seen.length >= 2) {
      const a = seen[0];
      const b = seen[seen.length - 1];
      const rate = (b.c - a.c) / ((b.t - a.t) / 1000);
      if (rate > 0) return { seconds: toGo / rate, rate };
    }
    const rate = p.progress && p.progress.events_per_second;
    const eta = p.progress && p.progress.eta_seconds;
    return eta === null || eta === undefined ? null : { seconds: eta, rate };
  }

  function noteProgress(list) {
    const now = Date.now();
    const keys = new Set();
    for (const p of list) {
      const key = projectionKey(p);
      keys.add(key);
      const seen = progressSeen.get(key) || [];
      seen.push({ t: now, c: p.checkpoint });
      while (seen.length > 2 && seen[0].t < now - RECENT_S * 1000) seen.shift();
      progressSeen.set(key, seen);
    }
    for (const key of [...progressSeen.keys()]) if (!keys.has(key)) progressSeen.delete(key);
  }

  function progressCell(p) {
    const head = Math.max(p.head, p.checkpoint);
    const ratio = head > 0 ? p.checkpoint / head : 1;
    const bar = h('div', { class: `bar ${p.status === 'failed' ? 'bar-bad' : ratio >= 1 ? 'bar-done' : ''}`, role: 'progressbar',
      'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(ratio * 100) }, h('div', { class: 'bar-fill' }));
    bar.firstChild.style.width = `${(ratio * 100).toFixed(1)}%`;
    let text = `${fmtCount(p.checkpoint)} / ${fmtCount(head)}`;
    if (p.lag_events > 0 && p.status !== 'failed' && !p.halted) {
      const left = timeLeft(p);
      text += left ? ` · ${Math.floor(ratio * 100)}% · ${fmtDuration(left.seconds)} left` : ` · ${Math.floor(ratio * 100)}%`;
    }
    return h('td', { class: 'wide' }, bar, h('div', { class: 'small muted', 'data-field': 'progress' }, text));
  }

  function renderProjections(list) {
    lastProjections = list;
    const sorted = list.slice().sort((a, b) => a.name.localeCompare(b.name)
      || (ROLE_ORDER[a.role] ?? 9) - (ROLE_ORDER[b.role] ?? 9) || b.version - a.version || b.generation - a.generation);
    const rows = sorted.map((p) => {
      const parked = p.role === 'active' ? parkedCount.get(p.name) : undefined;
      const problem = p.halted
        ? `halted${p.failed_at ? ` at #${p.failed_at}` : ''}: ${p.error || 'see the log'}`
        : p.error || '';
      return h('tr', { 'data-testid': 'projection-row', 'data-name': p.name, 'data-version': p.version,
        'data-generation': p.generation, 'data-role': p.role, 'data-status': p.status },
      h('td', {}, h('span', { class: 'strong' }, p.name), h('span', { class: 'tag' }, p.mode)),
      h('td', { 'data-field': 'version', title: `digest ${p.digest}` }, `v${p.version}`,
        p.generation > 1 ? h('span', { class: 'muted' }, ` · gen ${p.generation}`) : null),
      h('td', {}, badge(p.role, ROLE_TONE[p.role] || 'idle')),
      h('td', {}, badge(p.status.replace('_', ' '), STATE_TONE[p.status] || 'idle')),
      progressCell(p),
      h('td', { class: 'num' }, fmtCount(p.lag_events), h('div', { class: 'small muted' }, p.lag_ms ? fmtSeconds(p.lag_ms / 1000) : '')),
      h('td', { class: 'num' }, fmtCount(p.events_applied)),
      h('td', { class: `num ${parked ? 'warn-text' : ''}`, 'data-field': 'parked' }, parked === undefined ? '–' : fmtCount(parked)),
      h('td', { class: 'error-text' }, problem));
    });
    $('projections-body').replaceChildren(...rows);
    $('projections-empty').hidden = rows.length > 0;
    const names = new Set(list.map((p) => p.name));
    const building = list.filter((p) => p.role === 'building').length;
    setSection('projections', rows.length ? 'ready' : 'empty',
      `${names.size} projection${names.size === 1 ? '' : 's'}, ${list.length} version${list.length === 1 ? '' : 's'}${building ? ` · ${building} building` : ''}`);
  }

  async function pollParked() {
    if (!lastProjections) return;
    const names = [...new Set(lastProjections.filter((p) => p.role === 'active').map((p) => p.name))];
    await Promise.all(names.map(async (name) => {
      try {
        const body = await getJson(`/projections/${encodeURIComponent(name)}/parked`);
        parkedCount.set(name, (body.parked || []).length);
      } catch (_) {
        parkedCount.delete(name);
      }
    }));
  }

  // ---------------------------------------------------------------- events

  /** The write store's head as last seen (from /health or a newer event). */
  let head = null;
  /** The newest events, newest first. */
  let events = [];
  let lastPosition = null;
  let received = 0;
  let streamMode = 'starting'; // starting | live | polling
  let source = null;
  let renderQueued = false;

  function addEvents(batch) {
    for (const e of batch) {
      if (lastPosition !== null && e.position <= lastPosition) continue;
      events.unshift(e);
      lastPosition = e.position;
      received++;
    }
    // An event seen is a head at least that far: the figure keeps up between polls.
    if (lastPosition !== null && (head === null || lastPosition > head)) {
      head = lastPosition;
      $('head-position').textContent = fmtCount(head);
    }
    if (events.length > MAX_EVENTS) events = events.slice(0, MAX_EVENTS);
    if (!renderQueued) {
      // Bursts of events are drawn once, not once each.
      renderQueued = true;
      setTimeout(renderEvents, 50);
    }
  }

  function eventsNote() {
    if (streamMode === 'live') return `live from /events/stream · ${fmtCount(received)} received`;
    if (streamMode === 'polling') return `polling /events every ${POLL_MS / 1000} s (this host has no /events/stream)`;
    return 'connecting…';
  }

  let renderedTop = null;

  function renderEvents() {
    renderQueued = false;
    const rows = events.map((e) => {
      const data = JSON.stringify(e.data);
      return h('tr', { 'data-testid': 'event-row', 'data-position': e.position,
        class: renderedTop !== null && e.position > renderedTop ? 'fresh' : '' },
      h('td', { class: 'num mono' }, e.position),
      h('td', { class: 'mono small', title: e.timestamp }, fmtTime(e.timestamp)),
      h('td', { class: 'mono' }, e.stream),
      h('td', { class: 'num' }, e.version),
      h('td', {}, h('span', { class: 'type' }, e.type)),
      h('td', { class: 'wide mono small data', title: data }, data.length > 140 ? `${data.slice(0, 140)}…` : data));
    });
    renderedTop = events.length ? events[0].position : renderedTop;
    $('events-body').replaceChildren(...rows);
    $('events-empty').hidden = rows.length > 0;
    setSection('events', rows.length ? 'ready' : 'empty', eventsNote());
  }

  /** Reads the page after `lastPosition`; far behind the head, skips to the newest. */
  async function pollEvents(head) {
    if (lastPosition === null) return;
    let after = lastPosition;
    if (head !== null && head - after > MAX_EVENTS) after = head - MAX_EVENTS;
    const page = await getJson(`/events?after=${after}&limit=${MAX_EVENTS}`);
    if (after > lastPosition) lastPosition = after;
    addEvents(page.events || []);
    setSection('events', events.length ? 'ready' : 'empty', eventsNote());
  }

  function openStream() {
    if (typeof EventSource === 'undefined') {
      streamMode = 'polling';
      return;
    }
    source = new EventSource(`/events/stream?after=${lastPosition}`);
    source.onopen = () => {
      streamMode = 'live';
      setSection('events', events.length ? 'ready' : 'empty', eventsNote());
    };
    source.onmessage = (message) => {
      try {
        addEvents([JSON.parse(message.data)]);
      } catch (_) {
        // Not an event: nothing to show.
      }
    };
    // The host dropped this client for falling behind: resume from what we have.
    source.addEventListener('lagged', () => {
      source.close();
      setTimeout(openStream, 0);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (no such route, or not an event stream): poll, and try again later.
        streamMode = 'polling';
        source = null;
        setSection('events', events.length ? 'ready' : 'empty', eventsNote());
        setTimeout(() => {
          if (streamMode === 'polling') openStream();
        }, STREAM_RETRY_MS);
      }
      // Otherwise the browser reconnects by itself, sending Last-Event-ID.
    };
  }

  async function startEvents(head) {
    const after = Math.max(0, head - MAX_EVENTS);
    const page = await getJson(`/events?after=${after}&limit=${MAX_EVENTS}`);
    lastPosition = after;
    addEvents(page.events || []);
    renderEvents();
    openStream();
  }

  // ---------------------------------------------------------------- readiness

  /** `/ready`: 200 ready, 503 not yet (with the reason), 404 a host without it. */
  function renderReadiness(answer) {
    const pill = $('readiness');
    const error = answer.status === 'rejected' ? answer.reason : null;
    // Unreachable (said by the connection pill) or a host without /ready: no claim.
    if (error && (!(error instanceof HttpError) || error.status === 404)) {
      pill.hidden = true;
      return;
    }
    pill.hidden = false;
    const ready = !error;
    pill.textContent = ready ? 'ready' : 'not ready';
    pill.className = `pill ${ready ? 'pill-ok' : 'pill-warn'}`;
    pill.dataset.state = ready ? 'ready' : 'not-ready';
    pill.title = ready ? 'GET /ready: every active projection is caught up' : `GET /ready: ${error.message}`;
  }

  // ---------------------------------------------------------------- the loop

  let tick = 0;

  async function poll() {
    tick++;
    const jobs = {
      health: getJson('/health'),
      plugins: getJson('/plugins'),
      projections: getJson('/projections'),
      metrics: pollMetrics(),
      ready: getJson('/ready'),
    };
    const names = Object.keys(jobs);
    const settled = await Promise.allSettled(Object.values(jobs));
    const result = Object.fromEntries(names.map((name, i) => [name, settled[i]]));
    // Reached when any request of this round got an answer, even an error status.
    const requests = ['health', 'plugins', 'projections', 'metrics'].map((name) => result[name]);
    const failures = requests.filter((r) => r.status === 'rejected');
    const reached = failures.length < requests.length || failures.some((r) => r.reason instanceof HttpError);
    setConnection(reached, failures.length ? `No answer (${failures[0].reason && failures[0].reason.message}).` : '');

    if (result.health.status === 'fulfilled') {
      head = Math.max(result.health.value.head, lastPosition ?? 0);
      $('head-position').textContent = fmtCount(head);
    }
    renderReadiness(result.ready);
    if (result.plugins.status === 'fulfilled') renderPlugins(result.plugins.value);
    else if (result.plugins.reason instanceof HttpError) setSection('plugins', 'error', `/plugins: ${result.plugins.reason.message}`);
    if (result.projections.status === 'fulfilled') {
      const list = result.projections.value.projections || [];
      noteProgress(list);
      renderProjections(list);
      // Parked events need one request per projection: counted now and then, and
      // at once for a projection not counted yet.
      const uncounted = list.some((p) => p.role === 'active' && !parkedCount.has(p.name));
      if (tick % PARKED_EVERY === 1 || uncounted) {
        await pollParked();
        renderProjections(list);
      }
    } else if (result.projections.reason instanceof HttpError) {
      setSection('projections', 'error', `/projections: ${result.projections.reason.message}`);
    }
    renderMetrics();

    try {
      if (reached && lastPosition === null && head !== null) await startEvents(head);
      else if (reached && streamMode === 'polling') await pollEvents(head);
    } catch (error) {
      if (error instanceof HttpError) setSection('events', 'error', `/events: ${error.message}`);
    }
  }

  async function loop() {
    try {
      await poll();
    } catch (error) {
      // A bug here must not stop the page from updating.
      console.error(error);
    }
    setTimeout(loop, POLL_MS);
  }

  window.addEventListener('resize', () => renderMetrics());
  loop();
})();
