/**
 * The JSON shapes of the kale/api routes, mirroring kale_ext/server/_shapes.py, and
 * small pure helpers the sidebar builds its view from.
 */

// --- clusters -----------------------------------------------------------------------

export interface IWorker {
  name: string;
  address: string;
  host: string;
  cores: number;
  memory: number;
  job_id: string | null;
}

export interface IJob {
  job_id: string;
  state: string;
  reason: string;
}

/** A cluster's idle clock in seconds; `left` is null while in use or without timeout. */
export interface IIdle {
  timeout: number | null;
  idle_for: number | null;
  left: number | null;
}

export interface ICluster {
  id: string;
  backend: string;
  kind: string;
  state: string;
  address: string;
  dashboard: string | null;
  workers: IWorker[];
  jobs: IJob[];
  detail: string;
  idle: IIdle | null;
  cores: number;
  memory: number;
  n_workers: number;
}

/** A cluster start that failed, kept until dismissed. */
export interface IFailedStart {
  id: string;
  time: number;
  kind: string;
  backend: string;
  profile: string | null;
  workers: number | null;
  error: string;
  type: string;
}

export interface IStartClusterBody {
  profile?: string | null;
  kind?: string | null;
  backend?: string | null;
  workers?: number | null;
  overrides?: Record<string, unknown>;
}

export interface IPatchClusterBody {
  workers?: number;
  minimum?: number;
  maximum?: number;
}

export interface IClusterAction {
  id: string;
  message: string;
}

// --- profiles -----------------------------------------------------------------------

export interface IProfile {
  name: string;
  options: Record<string, unknown>;
}

export interface IProfiles {
  default: string;
  profiles: IProfile[];
}

// --- searches -----------------------------------------------------------------------

export interface IBest {
  trial: number;
  value: number;
  step: number | null;
  config: Record<string, unknown>;
  state: string;
}

export interface ISearch {
  name: string;
  store: string;
  cluster: string | null;
  started: number | null;
  state: string;
  alive: boolean;
  metric: string | null;
  mode: string | null;
  planned: number | null;
  trials: Record<string, number>;
  best: IBest | null;
}

/** The answer of forgetting a search. */
export interface IForget {
  name: string;
  deleted: string[];
  kept: string[];
  message: string;
}

export interface ISearchDetail extends ISearch {
  definition: Record<string, unknown>;
  created: number | null;
  lag?: Record<string, number> | null; // the driver's lag (s): loop, ingest, recent, max
}

export interface ITrial {
  number: number;
  state: string;
  params: Record<string, unknown>;
  attempt: number;
  worker: string | null;
  job_id: string | null;
  started: number | null;
  ended: number | null;
  last: Record<string, unknown>;
  best: number | null;
  best_step: number | null;
  error: string | null;
  checkpoint: string | null;
  retries: number;
  updated: number | null;
  /** Where the latest attempt's launch went: seconds of scheduling, imports, first_report. */
  launch: Record<string, unknown>;
}

export interface IMetricRow {
  rowid: number;
  trial: number;
  attempt: number;
  rank: number;
  seq: number;
  step: number | null;
  time: number;
  values: Record<string, unknown>;
}

export interface IMetrics {
  trial: number;
  since: number;
  last_rowid: number;
  rows: IMetricRow[];
}

export interface ISeriesPoint {
  rowid: number;
  trial: number;
  attempt: number;
  step: number | null;
  value: number;
}

export interface ISearchMetrics {
  metric: string;
  since: number;
  last_rowid: number;
  more: boolean;
  rows: ISeriesPoint[];
}

export type Action = 'stop' | 'pause' | 'resume' | 'restart';

export interface IControlBody {
  action: Action;
  trial: number | null;
  params?: Record<string, unknown>;
}

export interface IControl {
  name: string;
  action: string;
  trial: number | null;
  message: string;
}

export interface IError {
  message: string;
  reason: string | null;
}

// --- helpers ------------------------------------------------------------------------

/** Trial states after which a trial never runs again (TrialState.is_finished). */
export const FINISHED_STATES = ['completed', 'pruned', 'stopped', 'failed'];

/** The control actions a trial in `state` accepts, in the order the buttons show. */
export function trialActions(state: string): Action[] {
  switch (state) {
    case 'running':
      return ['stop', 'pause'];
    case 'pending':
      return ['stop', 'pause'];
    case 'paused':
      return ['stop', 'resume'];
    default:
      return [];
  }
}

/** A trial state in a few letters, for the sidebar's narrow trial table. */
export function shortState(state: string): string {
  const short: Record<string, string> = {
    running: 'run',
    pending: 'wait',
    paused: 'paused',
    completed: 'done',
    pruned: 'pruned',
    stopped: 'stopped',
    failed: 'failed'
  };
  return short[state] ?? state;
}

/** Finished and planned trial counts of a search. */
export function progress(search: ISearch): { done: number; total: number } {
  let done = 0;
  let seen = 0;
  for (const [state, n] of Object.entries(search.trials)) {
    seen += n;
    if (FINISHED_STATES.includes(state)) {
      done += n;
    }
  }
  return { done, total: Math.max(search.planned ?? seen, seen) };
}

/** "3/8 done (2 running)" */
export function progressText(search: ISearch): string {
  const { done, total } = progress(search);
  const running = search.trials['running'] ?? 0;
  return `${done}/${total} done` + (running ? ` (${running} running)` : '');
}

/** "val_acc 0.9123 (trial 4)" or "-" */
export function bestText(search: ISearch): string {
  if (!search.best) {
    return '-';
  }
  return `${search.metric ?? 'best'} ${formatNumber(search.best.value)} (trial ${search.best.trial})`;
}

/** Drop a mantissa's trailing zeros: "1.180" -> "1.18", "2.000" -> "2". */
function trimZeros(mantissa: string): string {
  return mantissa.includes('.') ? mantissa.replace(/\.?0+$/, '') : mantissa;
}

/**
 * Numbers as the panel's table shows them (kale_ext/widgets/_format.py): four
 * significant digits, plain for 0.001 <= |x| < 10000, else scientific ("1.18e-4"),
 * trailing zeros dropped; integers whole; null, undefined and NaN as "-".
 */
export function formatNumber(value: unknown): string {
  if (typeof value !== 'number') {
    return value === null || value === undefined ? '-' : String(value);
  }
  if (Number.isNaN(value)) {
    return '-';
  }
  if (!Number.isFinite(value)) {
    return value > 0 ? '∞' : '-∞';
  }
  if (Number.isInteger(value) && Math.abs(value) < 1e15) {
    return String(value);
  }
  const abs = Math.abs(value);
  const text = abs >= 1e-3 && abs < 1e4 ? value.toPrecision(4) : value.toExponential(3);
  const [mantissa, exponent] = text.split('e');
  return exponent === undefined ? trimZeros(mantissa) : `${trimZeros(mantissa)}e${exponent}`;
}

/** "1 worker", "2 workers". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Bytes as "1.5 GiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** "lr=0.001, optimizer=Adam": a trial's params in one line, nested keys dotted. */
export function paramsText(params: Record<string, unknown>, prefix = ''): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      parts.push(paramsText(value as Record<string, unknown>, `${prefix}${key}.`));
    } else {
      parts.push(`${prefix}${key}=${formatNumber(value)}`);
    }
  }
  return parts.filter(p => p).join(', ');
}

/** Job states in which the batch system's reason field lists the job's nodes. */
const RUNNING_JOB_STATES = ['RUNNING', 'COMPLETING', 'R', 'r', 'RUN', 'E'];

/** "123 RUNNING on node1" or "124 PENDING (Resources)". */
export function jobText(job: IJob): string {
  if (!job.reason) {
    return `${job.job_id} ${job.state}`;
  }
  return RUNNING_JOB_STATES.includes(job.state)
    ? `${job.job_id} ${job.state} on ${job.reason}`
    : `${job.job_id} ${job.state} (${job.reason.replace(/^\((.*)\)$/, '$1')})`;
}

/** Jobs still holding resources (not ended). */
export function liveJobs(cluster: ICluster): IJob[] {
  const ended = ['CANCELLED', 'COMPLETED', 'GONE', 'FAILED', 'TIMEOUT'];
  return cluster.jobs.filter(j => !ended.includes(j.state));
}

/** The code a notebook runs to reconnect to cluster `id`. */
export function connectCode(id: string): string {
  return `import kale_ext as kale\ncluster = kale.connect(${JSON.stringify(id)})`;
}

/**
 * Append a batch of new metric rows to what was already seen, dropping rows already
 * present (same rowid), so incremental fetches never duplicate a point.
 */
export function mergeMetrics(seen: IMetricRow[], batch: IMetrics): IMetricRow[] {
  const last = seen.length ? seen[seen.length - 1].rowid : 0;
  return seen.concat(batch.rows.filter(r => r.rowid > last));
}
