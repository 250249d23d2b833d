/**
 * The Kale sidebar: clusters (status, idle clock, scale, stop, start from a profile,
 * insert connect code), failed starts until dismissed, searches (running ones first,
 * newest first, finished ones folded away, a filter, forget) and the trials of the
 * selected search with stop/pause/resume buttons and a sparkline of each trial's
 * metric. Plain DOM in a Lumino widget; one Lumino Poll refreshes it, with backoff on
 * errors, and stops while the panel is hidden.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { KaleAPI } from './api';
import { clusterCard, failedStartCard } from './clusters';
import { breakable, button, h } from './dom';
import { MetricHistory, SPARK_HEIGHT, SPARK_WIDTH } from './history';
import { TRIALS_SHOWN, leftOutText, mergePages, trialQueries } from './trialpages';
import { isActive, isIdle, searchGroups } from './lists';
import {
  Action,
  ICluster,
  IFailedStart,
  IProfiles,
  ISearch,
  ITrial,
  bestText,
  connectCode,
  formatNumber,
  paramsText,
  plural,
  progressText,
  shortState,
  trialActions
} from './models';

const SVG = 'http://www.w3.org/2000/svg';
// Metric pages (of up to 5000 rows) fetched per poll: a long search opened late
// catches up over a few polls instead of one long one.
const METRIC_PAGES = 4;
// Icons of the trial buttons (their titles say the action).
const ACTION_ICONS: Record<Action, string> = {
  stop: '■',
  pause: '❚❚',
  resume: '▶',
  restart: '↻'
};

/** What forgetting a search should do with its files; null: nothing (cancelled). */
export type ForgetChoice = 'keep' | 'delete' | null;

export interface ISidebarOptions {
  api?: KaleAPI;
  /** Inserts code into a new cell of the active notebook; returns false when none is open. */
  insertCode: (code: string) => boolean;
  /** Asks whether to forget a search, and whether to delete its files too. */
  confirmForget?: (search: ISearch) => Promise<ForgetChoice>;
  /** Poll interval in milliseconds. */
  interval?: number;
}

/** The lab's dialog: cancel, forget (files kept), or forget and delete the files. */
async function askForget(search: ISearch): Promise<ForgetChoice> {
  const result = await showDialog({
    title: `Forget search ${search.name}?`,
    body:
      `It leaves the sidebar's list. Its store (${search.store}) and checkpoints can stay ` +
      'on disk (a kernel can still read or resume it) or be deleted.',
    buttons: [
      Dialog.cancelButton(),
      Dialog.warnButton({ label: 'Forget and delete files', ariaLabel: 'delete' }),
      Dialog.okButton({ label: 'Forget, keep files', ariaLabel: 'keep' })
    ]
  });
  if (!result.button.accept) {
    return null;
  }
  return result.button.ariaLabel === 'delete' ? 'delete' : 'keep';
}

export class KaleSidebar extends Widget {
  readonly api: KaleAPI;
  readonly poll: Poll;
  private _insertCode: (code: string) => boolean;
  private _confirmForget: (search: ISearch) => Promise<ForgetChoice>;
  private _clusters: ICluster[] = [];
  private _failed: IFailedStart[] = [];
  private _searches: ISearch[] = [];
  private _trials: ITrial[] = [];
  private _shown = TRIALS_SHOWN;
  private _selected: string | null = null;
  private _scrollToTrials = false;
  private _showFinished = false;
  private _history: MetricHistory | null = null;
  private _profiles: IProfiles | null = null;
  private _scaleDraft = new Map<string, string>();
  private _message: HTMLElement;
  private _clusterTools: HTMLElement;
  private _clusterList: HTMLElement;
  private _failedList: HTMLElement;
  private _filter: HTMLInputElement;
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
    this._confirmForget = options.confirmForget ?? askForget;

    this._message = h('div', { class: 'kale-message', role: 'status' });
    this._clusterTools = h('span', { class: 'kale-tools' });
    this._clusterList = h('div', { class: 'kale-cluster-list' });
    this._failedList = h('div', { class: 'kale-failed-list' });
    this._searchList = h('div', { class: 'kale-search-list' });
    this._trialList = h('div', { class: 'kale-trial-list' });
    this._filter = h('input', {
      class: 'kale-filter-input',
      type: 'search',
      placeholder: 'filter searches',
      'aria-label': 'filter searches by name, state or metric'
    }) as HTMLInputElement;
    this._filter.addEventListener('input', () => this._renderSearches());
    this._profileSelect = h('select', {
      class: 'kale-profile-select',
      id: 'kale-profile-select'
    }) as HTMLSelectElement;
    this._workersInput = h('input', {
      class: 'kale-workers-input',
      id: 'kale-workers-input',
      type: 'number',
      min: '0',
      placeholder: 'profile'
    }) as HTMLInputElement;
    this._backendSelect = h(
      'select',
      { class: 'kale-backend-select', id: 'kale-backend-select' },
      h('option', { value: '' }, 'profile'),
      h('option', { value: 'dask' }, 'dask'),
      h('option', { value: 'ipyparallel' }, 'ipyparallel')
    ) as HTMLSelectElement;
    const field = (label: string, id: string, input: HTMLElement) =>
      h('label', { class: 'kale-field', for: id }, h('span', {}, label), input);
    const form = h(
      'div',
      { class: 'kale-start-form' },
      field('profile', 'kale-profile-select', this._profileSelect),
      field('workers', 'kale-workers-input', this._workersInput),
      field('backend', 'kale-backend-select', this._backendSelect),
      button('Start', 'kale-start-button jp-mod-accept', () => void this._start(),
             'start a cluster from the profile')
    );
    this.node.append(
      h('h2', { class: 'kale-title' }, 'Kale'),
      this._message,
      h('div', { class: 'kale-heading' }, h('h3', {}, 'Clusters'), this._clusterTools),
      form,
      this._failedList,
      this._clusterList,
      h('div', { class: 'kale-heading' }, h('h3', {}, 'Searches'), this._filter),
      this._searchList,
      this._trialList
    );

    const interval = options.interval ?? 2000;
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
    const [clusters, failed, searches] = await Promise.all([
      this.api.clusters(),
      this.api.failedStarts(),
      this.api.searches()
    ]);
    this._clusters = clusters;
    this._failed = failed;
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
      const search = searches.find(s => s.name === selected);
      const queries = search ? trialQueries(search, this._shown) : [{}];
      const [pages] = await Promise.all([
        Promise.all(queries.map(q => this.api.trials(selected, q))),
        this._fetchHistory(this._history)
      ]);
      this._trials = mergePages(pages);
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
      return { message: `${cluster.id} has ${plural(cluster.n_workers, 'worker')}` };
    });
  }

  private _scale(id: string): void {
    const text = this._scaleDraft.get(id) ?? '';
    void this._act(`scaling ${id}`, () =>
      this.api.patchCluster(id, { workers: text === '' ? NaN : Number(text) })
    ).then(() => this._scaleDraft.delete(id));
  }

  private _stopIdle(): void {
    const idle = this._clusters.filter(isIdle).map(c => c.id);
    void this._act(`stopping idle ${plural(idle.length, 'cluster')}`, async () => {
      for (const id of idle) {
        await this.api.stopCluster(id);
      }
      return { message: `stopped ${idle.join(', ')}` };
    });
  }

  private _control(search: string, action: Action, trial: number | null): void {
    const target = trial === null ? search : `trial ${trial}`;
    void this._act(`${action} ${target}`, () => this.api.control(search, { action, trial }));
  }

  private async _forget(search: ISearch): Promise<void> {
    const choice = await this._confirmForget(search);
    if (choice === null) {
      return;
    }
    await this._act(`forgetting ${search.name}`, () =>
      this.api.forgetSearch(search.name, choice === 'delete')
    );
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
    this._renderFailed();
    this._renderSearches();
    this._renderTrials();
    if (this._scrollToTrials && this._trialList.firstChild) {
      this._scrollToTrials = false;
      this._trialList.scrollIntoView({ block: 'start', behavior: 'smooth' });
    }
  }

  private _renderClusters(): void {
    const idle = this._clusters.filter(isIdle);
    this._clusterTools.replaceChildren(
      ...(idle.length
        ? [
            button(
              `Stop ${plural(idle.length, 'idle cluster')}`,
              'kale-stop-idle-button',
              () => this._stopIdle(),
              `stop ${idle.map(c => c.id).join(', ')}: no client and no task`
            )
          ]
        : [])
    );
    if (!this._clusters.length) {
      this._clusterList.replaceChildren(h('p', { class: 'kale-empty' }, 'No clusters.'));
      return;
    }
    const actions = {
      scale: (id: string) => this._scale(id),
      stop: (id: string) => {
        this._scaleDraft.delete(id);
        void this._act(`stopping ${id}`, () => this.api.stopCluster(id));
      },
      connect: (id: string) => this._connect(id),
      draft: (id: string) => this._scaleDraft.get(id),
      setDraft: (id: string, text: string) => this._scaleDraft.set(id, text)
    };
    this._clusterList.replaceChildren(...this._clusters.map(c => clusterCard(c, actions)));
  }

  private _renderFailed(): void {
    const dismiss = (id: string) =>
      void this._act('dismissing a failed start', () => this.api.dismissFailedStart(id));
    this._failedList.replaceChildren(...this._failed.map(f => failedStartCard(f, dismiss)));
  }

  private _searchRow(s: ISearch): HTMLElement {
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
        h('span', { class: `kale-state kale-state-${s.state.split(':')[0]}` }, s.state),
        s.alive
          ? null
          : button('✕', 'kale-forget-button', () => void this._forget(s), `forget ${s.name}`)
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
      this._scrollToTrials = this._selected !== null;
      this._shown = TRIALS_SHOWN;
      void this.poll.refresh();
    });
    return row;
  }

  private _renderSearches(): void {
    if (!this._searches.length) {
      this._searchList.replaceChildren(h('p', { class: 'kale-empty' }, 'No searches.'));
      return;
    }
    const { active, finished } = searchGroups(this._searches, this._filter.value);
    const folded = h(
      'details',
      { class: 'kale-finished' },
      h('summary', {}, `${finished.length} finished search${finished.length === 1 ? '' : 'es'}`),
      ...finished.map(s => this._searchRow(s))
    ) as HTMLDetailsElement;
    // Open while the user keeps it open, or while it holds the selected search.
    folded.open = this._showFinished || finished.some(s => s.name === this._selected);
    folded.addEventListener('toggle', () => (this._showFinished = folded.open));
    this._searchList.replaceChildren(
      ...active.map(s => this._searchRow(s)),
      ...(finished.length ? [folded] : []),
      ...(active.length || finished.length
        ? []
        : [h('p', { class: 'kale-empty' }, 'No search matches the filter.')])
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
      preserveAspectRatio: 'none',
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
      h('th', { title: 'trial' }, '#'),
      h('th', { title: 'state' }, 'state'),
      h('th', { title: `last ${metric} reported` }, 'last'),
      h('th', { title: `${metric} reported so far` }),
      h('th', { title: `best ${metric}` }, 'best')
    );
    // A tbody per trial: its numbers, then its params with its buttons at the right,
    // so the five number columns and the buttons share the sidebar's width.
    const trials = this._trials.map(t =>
      h(
        'tbody',
        { class: 'kale-trial', 'data-number': String(t.number), 'data-state': t.state },
        h(
          'tr',
          { class: 'kale-trial-numbers' },
          h('td', {}, String(t.number)),
          h('td', { class: `kale-state kale-state-${t.state}`, title: t.state }, shortState(t.state)),
          h('td', { class: 'kale-number' }, formatNumber(t.last[metric])),
          h('td', { class: 'kale-spark-cell' }, this._sparkline(t.number, search.mode)),
          h('td', { class: 'kale-number' }, formatNumber(t.best))
        ),
        h(
          'tr',
          { class: 'kale-trial-params' },
          h(
            'td',
            { colspan: '5' },
            h(
              'div',
              { class: 'kale-trial-foot' },
              h('span', { class: 'kale-params', title: t.error ?? '' }, paramsText(t.params)),
              h(
                'span',
                { class: 'kale-actions' },
                ...(search.alive ? trialActions(t.state) : []).map(a =>
                  button(
                    ACTION_ICONS[a],
                    `kale-trial-${a} kale-icon-button`,
                    () => this._control(search.name, a, t.number),
                    `${a} trial ${t.number}`
                  )
                )
              )
            )
          )
        )
      )
    );
    const searchButtons = search.alive
      ? (['pause', 'resume', 'stop'] as Action[]).map(a =>
          button(`${a} search`, `kale-search-${a}`, () => this._control(search.name, a, null))
        )
      : isActive(search)
        ? [
            h('span', { class: 'kale-detail' }, 'its driver has ended: '),
            button('resume search', 'kale-search-resume', () =>
              this._control(search.name, 'resume', null)
            )
          ]
        : [];
    const leftOut = leftOutText(search, this._trials.length);
    const more = leftOut
      ? [
          h('div', { class: 'kale-detail kale-trials-left-out' }, leftOut),
          button('show more', 'kale-trials-more', () => {
            this._shown *= 2;
            void this.poll.refresh();
          })
        ]
      : [];
    this._trialList.replaceChildren(
      h('h4', {}, `Trials of ${search.name}`),
      h(
        'div',
        { class: 'kale-detail kale-trials-metric' },
        ...breakable(metric),
        search.mode ? `, ${search.mode === 'min' ? 'lower' : 'higher'} is better` : ''
      ),
      h('div', { class: 'kale-row kale-actions' }, ...searchButtons),
      h('table', { class: 'kale-trials' }, h('thead', {}, header), ...trials),
      ...more
    );
  }
}
