/**
 * The sidebar's cluster cards and failed starts: plain DOM built from the API's shapes,
 * with the actions passed in.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { button, h } from './dom';
import { idleText, isIdle } from './lists';
import { ICluster, IFailedStart, formatBytes, jobText, liveJobs, plural } from './models';

export interface IClusterActions {
  scale: (id: string) => void;
  stop: (id: string) => void;
  connect: (id: string) => void;
  /** The scale box's text being typed for `id`, if any. */
  draft: (id: string) => string | undefined;
  setDraft: (id: string, text: string) => void;
}

/**
 * Where the sidebar opens a cluster's dashboard: through this Jupyter server
 * (`<base>/kale/clusters/<id>/dashboard/<page>`), which presents the certificate the
 * dashboard asks for; the page is that of the dashboard's own link.
 */
export function dashboardHref(c: ICluster, baseUrl: string): string | null {
  if (!c.dashboard) {
    return null;
  }
  let page = 'status';
  try {
    page = new URL(c.dashboard).pathname.replace(/^\/+/, '') || page;
  } catch {
    // not an absolute URL: the dashboard's main page
  }
  return URLExt.join(baseUrl, 'kale', 'clusters', encodeURIComponent(c.id), 'dashboard', page);
}

/** One cluster: id and state, size, jobs, idle clock, dashboard, scale, stop, connect. */
export function clusterCard(c: ICluster, actions: IClusterActions): HTMLElement {
  const scale = h('input', {
    class: 'kale-scale-input',
    type: 'number',
    min: '0',
    id: `kale-scale-${c.id}`,
    'aria-label': `workers of ${c.id}`
  }) as HTMLInputElement;
  scale.value = actions.draft(c.id) ?? String(c.n_workers);
  scale.addEventListener('input', () => actions.setDraft(c.id, scale.value));
  scale.addEventListener('keydown', e => e.key === 'Enter' && actions.scale(c.id));
  const jobs = liveJobs(c);
  const idle = idleText(c.idle);
  const dashboard = dashboardHref(c, ServerConnection.makeSettings().baseUrl);
  return h(
    'div',
    {
      class: 'kale-cluster',
      'data-id': c.id,
      'data-state': c.state,
      'data-idle': isIdle(c) ? 'true' : 'false'
    },
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
      h('span', { class: 'kale-workers' }, plural(c.n_workers, 'worker')),
      ` · ${plural(c.cores, 'core')} · ${formatBytes(c.memory)}`
    ),
    jobs.length
      ? h('div', { class: 'kale-row kale-jobs' }, `jobs: ${jobs.map(jobText).join(', ')}`)
      : null,
    idle ? h('div', { class: 'kale-row kale-idle' }, idle) : null,
    c.detail ? h('div', { class: 'kale-row kale-error' }, c.detail) : null,
    h(
      'div',
      { class: 'kale-row kale-actions' },
      h('label', { class: 'kale-scale-label', for: `kale-scale-${c.id}` }, 'workers'),
      scale,
      button('Scale', 'kale-scale-button', () => actions.scale(c.id), 'ask for this many workers'),
      button('Stop', 'kale-stop-button', () => actions.stop(c.id), 'stop the cluster'),
      dashboard
        ? h(
            'a',
            { class: 'kale-dashboard', href: dashboard, target: '_blank', rel: 'noopener' },
            'dashboard'
          )
        : null,
      button(
        'Connect code',
        'kale-connect-button',
        () => actions.connect(c.id),
        'insert code that connects to this cluster into the active notebook'
      )
    )
  );
}

/** A failed start with its reason, until dismissed. */
export function failedStartCard(f: IFailedStart, dismiss: (id: string) => void): HTMLElement {
  const what = `${f.profile ?? f.kind} (${f.backend} on ${f.kind}` +
    (f.workers !== null ? `, ${plural(f.workers, 'worker')})` : ')');
  const when = new Date(f.time * 1000).toLocaleTimeString();
  return h(
    'div',
    { class: 'kale-failed-start', 'data-id': f.id },
    h(
      'div',
      { class: 'kale-row' },
      h('span', { class: 'kale-id' }, `start of ${what} failed at ${when}`),
      button('Dismiss', 'kale-dismiss-button', () => dismiss(f.id), 'forget this failed start')
    ),
    h('div', { class: 'kale-row kale-error' }, `${f.type}: ${f.error}`)
  );
}
