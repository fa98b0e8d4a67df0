// The public results page: picks a group and a checkpoint, shows the ranking and a
// competitor's splits, and keeps them current by long polling (If-None-Match + ?wait=25s)
// without reloading. Every value from the API is put on the page with textContent, never
// as HTML: names come from imported start lists.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const WAIT = '25s';
  const PAGE = 50;
  const MAX_LIMIT = 500;
  const state = { race: null, limit: PAGE, generation: 0, controller: null, lastUpdate: null, rows: [] };

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const clock = (date) => date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

  function showError(message) {
    $('error').textContent = message;
    $('error').hidden = false;
    const last = state.lastUpdate ? ` (last update ${clock(state.lastUpdate)})` : '';
    $('updated').textContent = `Not updating: retrying${last}`;
  }

  function updated() {
    state.lastUpdate = new Date();
    $('error').hidden = true;
    $('updated').textContent = `Updated ${clock(state.lastUpdate)}`;
  }

  // Keeps `url` rendered: the first request reads it, the next ones wait for a change.
  // Starting another poll (a filter change, the competitor view) ends this one.
  async function follow(url, render) {
    const generation = ++state.generation;
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    let etag = null;
    while (generation === state.generation) {
      try {
        const headers = {};
        let target = url;
        if (etag) {
          headers['If-None-Match'] = etag;
          target += (url.includes('?') ? '&' : '?') + 'wait=' + WAIT;
        }
        const response = await fetch(target, { headers, cache: 'no-store', signal: controller.signal });
        if (generation !== state.generation) return;
        if (response.status === 200) {
          etag = response.headers.get('ETag');
          render(await response.json());
          updated();
        } else if (response.status === 304) {
          // Nothing changed during the wait: ask again.
        } else if (response.status === 503 || response.status === 429) {
          const after = Number(response.headers.get('Retry-After')) || 2;
          showError('The server is busy.');
          await sleep((after + Math.random() * after) * 1000);
        } else {
          const body = await response.json().catch(() => ({}));
          showError(body.error || `The server answered ${response.status}.`);
          if (response.status === 404) return;
          await sleep(5000);
        }
      } catch (err) {
        if (controller.signal.aborted) return;
        showError('Connection lost.');
        await sleep(3000);
      }
    }
  }

  function formatMs(ms) {
    const h = Math.floor(ms / 3600000);
    const m = Math.floor(ms / 60000) % 60;
    const s = Math.floor(ms / 1000) % 60;
    const pad = (n, w) => String(n).padStart(w, '0');
    const tail = `${pad(s, 2)}.${pad(ms % 1000, 3)}`;
    return h > 0 ? `${h}:${pad(m, 2)}:${tail}` : `${m}:${tail}`;
  }

  function fullName(row) {
    return [row.first_name, row.last_name].filter((part) => part).join(' ');
  }

  function resultsUrl() {
    const params = new URLSearchParams();
    const group = $('group').value;
    if (group) {
      const colon = group.indexOf(':');
      params.set(group.slice(0, colon), group.slice(colon + 1));
    }
    params.set('checkpoint', $('checkpoint').value);
    if (!$('by-label').hidden) params.set('by', $('by').value);
    params.set('limit', String(state.limit));
    return '/api/v1/results?' + params.toString();
  }

  function renderResults(page) {
    const leader = page.results.find((row) => row.rank === 1);
    const rows = page.results.map((row) => {
      const tr = el('tr');
      tr.dataset.bib = row.bib;
      const name = el('td', null, 'name');
      const button = el('button', fullName(row) || row.bib);
      button.type = 'button';
      button.addEventListener('click', () => showCompetitor(row.bib));
      name.append(button);
      let gap = '';
      if (row.rank !== null && leader && row.elapsed_ms !== null && row !== leader) {
        gap = '+' + formatMs(row.elapsed_ms - leader.elapsed_ms);
      }
      tr.append(
        el('td', row.rank, 'num'),
        el('td', row.bib),
        name,
        el('td', row.category, 'wide'),
        el('td', row.status || (row.elapsed_ms === null ? '' : formatMs(row.elapsed_ms)), 'num'),
        el('td', gap, 'num'),
      );
      return tr;
    });
    state.rows = page.results;
    $('results').tBodies[0].replaceChildren(...rows);
    $('count').textContent = `${page.results.length} of ${page.total} competitors`;
    $('more').hidden = page.results.length >= page.total || state.limit >= MAX_LIMIT;
    filterRows();
  }

  // The search box narrows the rows shown: a bib starting with it, or a name containing it.
  function filterRows() {
    const query = $('search').value.trim().toLowerCase();
    for (const tr of $('results').tBodies[0].rows) {
      const bib = tr.dataset.bib.toLowerCase();
      const name = tr.cells[2].textContent.toLowerCase();
      const match = !query || bib.startsWith(query) || name.includes(query);
      tr.classList.toggle('hidden', !match);
    }
  }

  function showRanking() {
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
    $('competitor').hidden = true;
    $('ranking').hidden = false;
    follow(resultsUrl(), renderResults);
  }

  async function showCompetitor(bib) {
    $('ranking').hidden = true;
    $('competitor').hidden = false;
    $('competitor-name').textContent = `Bib ${bib}`;
    $('competitor-info').textContent = '';
    $('splits').tBodies[0].replaceChildren();
    history.replaceState(null, '', '#bib=' + encodeURIComponent(bib));
    const path = '/api/v1/competitors/' + encodeURIComponent(bib);
    try {
      const response = await fetch(path, { cache: 'no-store' });
      if (response.status === 404) {
        showError(`No competitor with bib ${bib}.`);
        return;
      }
      const competitor = await response.json();
      $('competitor-name').textContent = `${fullName(competitor) || bib} (${bib})`;
      const info = [competitor.category, competitor.gender, competitor.country, competitor.status]
        .filter((part) => part);
      $('competitor-info').textContent = info.join(' · ');
    } catch (err) {
      showError('Connection lost.');
    }
    follow(path + '/times', renderSplits);
  }

  function renderSplits(view) {
    const rows = view.checkpoints.map((split) => {
      const tr = el('tr');
      tr.append(
        el('td', split.checkpoint),
        el('td', split.time_of_day),
        el('td', split.elapsed_ms === null ? '' : formatMs(split.elapsed_ms)),
        el('td', split.leg_ms === null ? '' : formatMs(split.leg_ms)),
        el('td', split.rank),
      );
      return tr;
    });
    $('splits').tBodies[0].replaceChildren(...rows);
  }

  async function start() {
    let race;
    try {
      const response = await fetch('/api/v1/race', { cache: 'no-store' });
      race = await response.json();
    } catch (err) {
      showError('Cannot reach the results service.');
      setTimeout(start, 3000);
      return;
    }
    state.race = race;
    const group = $('group');
    for (const [label, key, values] of [['Gender', 'gender', race.genders], ['Category', 'category', race.categories]]) {
      const optgroup = el('optgroup');
      optgroup.label = label;
      for (const value of values) {
        const option = el('option', value);
        option.value = `${key}:${value}`;
        optgroup.append(option);
      }
      group.append(optgroup);
    }
    const checkpoint = $('checkpoint');
    for (const name of race.checkpoints.slice(1)) {
      const option = el('option', name);
      option.value = name;
      checkpoint.append(option);
    }
    checkpoint.value = race.checkpoints[race.checkpoints.length - 1];
    // Gun times exist only when competitors are in waves.
    if (race.fields.includes('wave')) {
      $('by-label').hidden = false;
      $('by').value = race.rank_by === 'gun' ? 'gun' : 'net';
    }
    for (const control of [group, checkpoint, $('by')]) {
      control.addEventListener('change', () => {
        state.limit = PAGE;
        showRanking();
      });
    }
    $('more').addEventListener('click', () => {
      state.limit = Math.min(state.limit + 100, MAX_LIMIT);
      showRanking();
    });
    $('back').addEventListener('click', showRanking);
    $('search').addEventListener('input', filterRows);
    // Enter opens a competitor: the one row the search leaves, else the bib typed.
    $('filters').addEventListener('submit', (event) => {
      event.preventDefault();
      const query = $('search').value.trim();
      const shown = [...$('results').tBodies[0].rows].filter((tr) => !tr.classList.contains('hidden'));
      if (shown.length === 1) showCompetitor(shown[0].dataset.bib);
      else if (/^[A-Za-z0-9_-]{1,16}$/.test(query)) showCompetitor(query);
    });
    const match = /^#bib=(.+)$/.exec(location.hash);
    if (match) showCompetitor(decodeURIComponent(match[1]));
    else showRanking();
  }

  start();
})();
