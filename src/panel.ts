/**
 * The Kale sidebar: clusters (status, scale, stop, start from a profile, insert
 * connect code), searches (state, progress, best) and the trials of the selected
 * search with stop/pause/resume buttons and a sparkline of each trial's metric. Plain
 * DOM in a Lumino widget; one Lumino Poll refreshes it, with backoff on errors, and
 * stops while the panel is hidden.
 */

import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { KaleAPI } from './api';
import { MetricHistory, SPARK_HEIGHT, SPARK_WIDTH } from './history';
import {
  Action,
  ICluster,
  IProfiles,
  ISearch,
  ITrial,
  bestText,
  connectCode,
  formatBytes,
  formatNumber,
  liveJobs,
  paramsText,
  progressText,
  trialActions
} from './models';

type Attrs = Record<string, string | undefined>;

const SVG = 'http://www.w3.org/2000/svg';
// Metric pages (of up to 5000 rows) fetched per poll: a long search opened late
// catches up over a few polls instead of one long one.
const METRIC_PAGES = 4;

/** A DOM element with attributes and children (strings become text). */
function h(
  tag: string,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElement {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined) {
      el.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      el.append(child);
    }
  }
  return el;
}

function button(label: string, cls: string, onClick: () => void, title?: string): HTMLElement {
  const el = h('button', { class: `jp-Button kale-button ${cls}`, type: 'button', title }, label);
  el.addEventListener('click', onClick);
  return el;
}

export interface ISidebarOptions {
  api?: KaleAPI;
  /** Inserts code into a new cell of the active notebook; returns false when none is open. */
  insertCode: (code: string) => boolean;
  /** Poll interval in milliseconds. */
  interval?: number;
}

export class KaleSidebar extends Widget {
  readonly api: KaleAPI;
  readonly poll: Poll;
  private _insertCode: (code: string) => boolean;
  private _clusters: ICluster[] = [];
  private _searches: ISearch[] = [];
  private _trials: ITrial[] = [];
  private _selected: string | null = null;
  private _history: MetricHistory | null = null;
  private _profiles: IProfiles | null = null;
  private _scaleDraft = new Map<string, string>();
  private _message: HTMLElement;
  private _clusterList: HTMLElement;
  private _searchList: HTMLElement;
  private _trialList: HTMLElement;
  private _profileSelect: HTMLSelectElement;
  private _workersInput: HTMLInputElement;
  private _backendSelect: HTMLSelectElement;

  constructor(options: ISidebarOptions) {
    super();
    this.id = 'kale-sidebar';
    this.addClass('kale-Sidebar');
    this.title.caption = 'Kale: clusters and searches';
    this.api = options.api ?? new KaleAPI();
    this._insertCode = options.insertCode;

    this._message = h('div', { class: 'kale-message', role: 'status' });
    this._clusterList = h('div', { class: 'kale-cluster-list' });
    this._searchList = h('div', { class: 'kale-search-list' });
    this._trialList = h('div', { class: 'kale-trial-list' });
    this._profileSelect = h('select', { class: 'kale-profile-select' }) as HTMLSelectElement;
    this._workersInput = h('input', {
      class: 'kale-workers-input',
      type: 'number',
      min: '0',
      placeholder: 'workers'
    }) as HTMLInputElement;
    this._backendSelect = h(
      'select',
      { class: 'kale-backend-select' },
      h('option', { value: '' }, 'profile backend'),
      h('option', { value: 'dask' }, 'dask'),
      h('option', { value: 'ipyparallel' }, 'ipyparallel')
    ) as HTMLSelectElement;
    const form = h(
      'div',
      { class: 'kale-start-form' },
      this._profileSelect,
      this._workersInput,
      this._backendSelect,
      button('Start', 'kale-start-button', () => void this._start())
    );
    this.node.append(
      h('h2', { class: 'kale-title' }, 'Kale'),
      this._message,
      h('h3', {}, 'Clusters'),
      form,
      this._clusterList,
      h('h3', {}, 'Searches'),
      this._searchList,
      this._trialList
    );

    const interval = options.interval ?? 3000;
    this.poll = new Poll({
      auto: false,
      factory: () => this.refresh(),
      frequency: { interval, backoff: true, max: 30 * 1000 },
      name: 'kale:sidebar',
      standby: () => !this.isVisible || 'when-hidden'
    });
  }

  /** Fetch clusters, searches and the selected search's trials, then redraw. */
  async refresh(): Promise<void> {
    try {
      await this._fetch();
    } catch (error) {
      // Shown, then rethrown so that the poll backs off.
      this._say(`cannot reach the kale server extension: ${(error as Error).message}`, 'error');
      throw error;
    }
  }

  private async _fetch(): Promise<void> {
    if (this._profiles === null) {
      this._profiles = await this.api.profiles();
      this._renderProfiles();
    }
    const [clusters, searches] = await Promise.all([this.api.clusters(), this.api.searches()]);
    this._clusters = clusters;
    this._searches = searches;
    if (this._selected && !searches.some(s => s.name === this._selected)) {
      this._selected = null;
    }
    const selected = this._selected;
    if (selected === null) {
      this._history = null;
      this._trials = [];
    } else {
      if (this._history?.search !== selected) {
        this._history = new MetricHistory(selected);
      }
      const [trials] = await Promise.all([
        this.api.trials(selected),
        this._fetchHistory(this._history)
      ]);
      this._trials = trials;
    }
    this._render();
  }

  /** Add the metric rows stored since the last poll: one request for all trials. */
  private async _fetchHistory(history: MetricHistory): Promise<void> {
    for (let page = 0; page < METRIC_PAGES; page++) {
      const batch = await this.api.searchMetrics(history.search, history.lastRowid);
      history.add(batch);
      if (!batch.more) {
        return;
      }
    }
  }

  protected onAfterShow(): void {
    void this.poll.start();
    void this.poll.refresh();
  }

  protected onAfterHide(): void {
    void this.poll.stop();
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  // -- actions -----------------------------------------------------------------------

  /** Run an API call, show its outcome, refresh the view. */
  private async _act(label: string, call: () => Promise<{ message?: string } | unknown>) {
    this._say(`${label}...`, 'busy');
    try {
      const message = ((await call()) as { message?: string })?.message ?? 'done';
      this._say(message.startsWith(label) ? message : `${label}: ${message}`, 'ok');
    } catch (error) {
      this._say(`${label} failed: ${(error as Error).message}`, 'error');
    }
    await this.poll.refresh();
  }

  private _say(text: string, kind: 'ok' | 'busy' | 'error'): void {
    this._message.textContent = text;
    this._message.dataset.kind = kind;
  }

  private async _start(): Promise<void> {
    const workers = this._workersInput.value.trim();
    const body = {
      profile: this._profileSelect.value || null,
      backend: this._backendSelect.value || null,
      workers: workers === '' ? null : Number(workers)
    };
    await this._act(`starting a cluster from profile ${body.profile ?? 'default'}`, async () => {
      const cluster = await this.api.startCluster(body);
      return { message: `${cluster.id} has ${cluster.n_workers} workers` };
    });
  }

  private _scale(id: string): void {
    const text = this._scaleDraft.get(id) ?? '';
    void this._act(`scaling ${id}`, () =>
      this.api.patchCluster(id, { workers: text === '' ? NaN : Number(text) })
    ).then(() => this._scaleDraft.delete(id));
  }

  private _control(search: string, action: Action, trial: number | null): void {
    const target = trial === null ? search : `trial ${trial}`;
    void this._act(`${action} ${target}`, () => this.api.control(search, { action, trial }));
  }

  private _connect(id: string): void {
    if (this._insertCode(connectCode(id))) {
      this._say(`inserted code connecting to ${id}`, 'ok');
    } else {
      this._say('open a notebook to insert the connect code into', 'error');
    }
  }

  // -- rendering ---------------------------------------------------------------------

  private _renderProfiles(): void {
    const profiles = this._profiles;
    if (!profiles) {
      return;
    }
    this._profileSelect.replaceChildren(
      ...profiles.profiles.map(p => {
        const kind = String(p.options['kind'] ?? 'local');
        const option = h('option', { value: p.name }, `${p.name} (${kind})`) as HTMLOptionElement;
        option.selected = p.name === profiles.default;
        return option;
      })
    );
  }

  private _render(): void {
    // Keep what the user is typing: skip redrawing the list while one of its inputs
    // has the focus.
    const active = document.activeElement;
    if (!(active instanceof HTMLInputElement && this._clusterList.contains(active))) {
      this._renderClusters();
    }
    this._renderSearches();
    this._renderTrials();
  }

  private _renderClusters(): void {
    if (!this._clusters.length) {
      this._clusterList.replaceChildren(h('p', { class: 'kale-empty' }, 'No clusters.'));
      return;
    }
    this._clusterList.replaceChildren(...this._clusters.map(c => this._clusterCard(c)));
  }

  private _clusterCard(c: ICluster): HTMLElement {
    const scale = h('input', {
      class: 'kale-scale-input',
      type: 'number',
      min: '0',
      'aria-label': `workers of ${c.id}`
    }) as HTMLInputElement;
    scale.value = this._scaleDraft.get(c.id) ?? String(c.n_workers);
    scale.addEventListener('input', () => this._scaleDraft.set(c.id, scale.value));
    scale.addEventListener('keydown', e => e.key === 'Enter' && this._scale(c.id));
    const jobs = liveJobs(c);
    return h(
      'div',
      { class: 'kale-cluster', 'data-id': c.id, 'data-state': c.state },
      h(
        'div',
        { class: 'kale-row' },
        h('span', { class: 'kale-id' }, c.id),
        h('span', { class: `kale-state kale-state-${c.state}` }, c.state)
      ),
      h(
        'div',
        { class: 'kale-row kale-detail' },
        `${c.backend} on ${c.kind} · `,
        h('span', { class: 'kale-workers' }, `${c.n_workers} workers`),
        ` · ${c.cores} cores · ${formatBytes(c.memory)}`
      ),
      jobs.length
        ? h(
            'div',
            { class: 'kale-row kale-jobs' },
            `jobs: ${jobs.map(j => `${j.job_id} ${j.state}`).join(', ')}`
          )
        : null,
      c.detail ? h('div', { class: 'kale-row kale-error' }, c.detail) : null,
      h(
        'div',
        { class: 'kale-row kale-actions' },
        c.dashboard
          ? h(
              'a',
              { class: 'kale-dashboard', href: c.dashboard, target: '_blank', rel: 'noopener' },
              'dashboard'
            )
          : null,
        scale,
        button('Scale', 'kale-scale-button', () => this._scale(c.id)),
        button('Stop', 'kale-stop-button', () => {
          this._scaleDraft.delete(c.id);
          void this._act(`stopping ${c.id}`, () => this.api.stopCluster(c.id));
        }),
        button('Connect code', 'kale-connect-button', () => this._connect(c.id),
               'insert code that connects to this cluster into the active notebook')
      )
    );
  }

  private _renderSearches(): void {
    if (!this._searches.length) {
      this._searchList.replaceChildren(h('p', { class: 'kale-empty' }, 'No searches.'));
      return;
    }
    this._searchList.replaceChildren(
      ...this._searches.map(s => {
        const row = h(
          'div',
          {
            class: `kale-search${s.name === this._selected ? ' kale-selected' : ''}`,
            'data-name': s.name,
            'data-state': s.state,
            title: 'show its trials'
          },
          h(
            'div',
            { class: 'kale-row' },
            h('span', { class: 'kale-id' }, s.name),
            h('span', { class: `kale-state kale-state-${s.state}` }, s.state)
          ),
          h(
            'div',
            { class: 'kale-row kale-detail' },
            h('span', { class: 'kale-progress' }, progressText(s)),
            ' · ',
            h('span', { class: 'kale-best' }, `best ${bestText(s)}`)
          )
        );
        row.addEventListener('click', () => {
          this._selected = s.name === this._selected ? null : s.name;
          void this.poll.refresh();
        });
        return row;
      })
    );
  }

  /** A tiny SVG line of `trial`'s metric; its tooltip gives first, last and best. */
  private _sparkline(trial: number, mode: string | null): SVGElement | null {
    const points = this._history?.polyline(trial);
    if (!this._history || !points) {
      return null;
    }
    const svg = document.createElementNS(SVG, 'svg');
    for (const [key, value] of Object.entries({
      class: 'kale-spark',
      width: String(SPARK_WIDTH),
      height: String(SPARK_HEIGHT),
      viewBox: `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`,
      role: 'img'
    })) {
      svg.setAttribute(key, value);
    }
    const title = document.createElementNS(SVG, 'title');
    title.textContent = this._history.tooltip(trial, mode);
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', points);
    svg.append(title, line);
    return svg;
  }

  private _renderTrials(): void {
    const search = this._searches.find(s => s.name === this._selected);
    if (!search) {
      this._trialList.replaceChildren();
      return;
    }
    const metric = search.metric ?? '';
    const header = h(
      'tr',
      {},
      ...['#', 'state', metric, 'history', 'best', ''].map(t => h('th', {}, t))
    );
    // Two rows per trial: its numbers and buttons, then its params across the table.
    const rows = this._trials.flatMap(t => [
      h(
        'tr',
        { class: 'kale-trial', 'data-number': String(t.number), 'data-state': t.state },
        h('td', {}, String(t.number)),
        h('td', { class: `kale-state kale-state-${t.state}` }, t.state),
        h('td', {}, formatNumber(t.last[metric])),
        h('td', { class: 'kale-spark-cell' }, this._sparkline(t.number, search.mode)),
        h('td', {}, formatNumber(t.best)),
        h(
          'td',
          { class: 'kale-actions' },
          ...(search.alive ? trialActions(t.state) : []).map(a =>
            button(a, `kale-trial-${a}`, () => this._control(search.name, a, t.number))
          )
        )
      ),
      h(
        'tr',
        { class: 'kale-trial-params', 'data-number': String(t.number) },
        h('td', {}),
        h('td', { class: 'kale-params', colspan: '5', title: t.error ?? '' }, paramsText(t.params))
      )
    ]);
    const searchButtons = search.alive
      ? (['pause', 'resume', 'stop'] as Action[]).map(a =>
          button(`${a} search`, `kale-search-${a}`, () => this._control(search.name, a, null))
        )
      : [h('span', { class: 'kale-detail' }, 'no live driver: resume it from a kernel to steer it')];
    this._trialList.replaceChildren(
      h('h4', {}, `Trials of ${search.name}`),
      h('div', { class: 'kale-row kale-actions' }, ...searchButtons),
      h('table', { class: 'kale-trials' }, h('thead', {}, header), h('tbody', {}, ...rows))
    );
  }
}
