import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ISearch,
  IMetrics,
  bestText,
  connectCode,
  formatBytes,
  formatNumber,
  jobText,
  liveJobs,
  mergeMetrics,
  paramsText,
  plural,
  progress,
  shortState,
  progressText,
  trialActions
} from '../models';
import { searchOf } from './fixtures';

function search(overrides: Partial<ISearch> = {}): ISearch {
  return searchOf({
    trials: { completed: 2, pruned: 1, running: 2, pending: 1 },
    best: { trial: 4, value: 0.91234, step: 3, config: {}, state: 'completed' },
    ...overrides
  });
}

test('progress counts finished trials against the planned number', () => {
  assert.deepEqual(progress(search()), { done: 3, total: 8 });
  assert.equal(progressText(search()), '3/8 done (2 running)');
  // A search without a plan (or that ran more) counts what it has seen.
  assert.deepEqual(progress(search({ planned: null })), { done: 3, total: 6 });
  assert.equal(progressText(search({ trials: {} })), '0/8 done');
});

test('best text names the metric, value and trial', () => {
  assert.equal(bestText(search()), 'val_acc 0.9123 (trial 4)');
  assert.equal(bestText(search({ best: null })), '-');
});

test('numbers, bytes and params are formatted compactly', () => {
  assert.equal(formatNumber(0.000012345), '1.234e-5');
  assert.equal(formatNumber(3), '3');
  assert.equal(formatNumber(null), '-');
  assert.equal(formatNumber('Adam'), 'Adam');
  assert.equal(formatNumber(Number.NaN), '-'); // not reported yet
  // By magnitude, as the panel's table: plain for 0.001 <= |x| < 10000.
  assert.equal(formatNumber(0.000118), '1.18e-4');
  assert.equal(formatNumber(0.5), '0.5');
  assert.equal(formatNumber(0.1 + 0.2), '0.3');
  assert.equal(formatNumber(0.0012345), '0.001234');
  assert.equal(formatNumber(9999.7), '1e+4');
  assert.equal(formatNumber(12345.6), '1.235e+4');
  assert.equal(formatNumber(-2.5e-7), '-2.5e-7');
  assert.equal(plural(1, 'worker'), '1 worker');
  assert.equal(plural(0, 'worker'), '0 workers');
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(3 * 1024 ** 3), '3.0 GiB');
  assert.equal(
    paramsText({ lr: 0.001, opt: { name: 'SGD', momentum: 0.9 } }),
    'lr=0.001, opt.name=SGD, opt.momentum=0.9'
  );
});

test('trial states have short labels for the narrow table', () => {
  assert.equal(shortState('running'), 'run');
  assert.equal(shortState('completed'), 'done');
  assert.equal(shortState('something-new'), 'something-new');
});

test('trial actions follow the trial state machine', () => {
  assert.deepEqual(trialActions('running'), ['stop', 'pause']);
  assert.deepEqual(trialActions('paused'), ['stop', 'resume']);
  for (const finished of ['completed', 'pruned', 'stopped', 'failed']) {
    assert.deepEqual(trialActions(finished), []);
  }
});

test('connect code is valid Python naming the cluster', () => {
  assert.equal(connectCode('kc-1a2b'), 'import kale_ext as kale\ncluster = kale.connect("kc-1a2b")');
});

test('ended jobs are not live', () => {
  const cluster = {
    id: 'kc-1',
    backend: 'dask',
    kind: 'slurm',
    state: 'running',
    address: 'tls://127.0.0.1:1',
    dashboard: null,
    workers: [],
    detail: '',
    idle: null,
    cores: 0,
    memory: 0,
    n_workers: 0,
    jobs: [
      { job_id: '1', state: 'RUNNING', reason: '' },
      { job_id: '2', state: 'CANCELLED', reason: '' },
      { job_id: '3', state: 'PENDING', reason: 'Priority' }
    ]
  };
  assert.deepEqual(
    liveJobs(cluster).map(j => j.job_id),
    ['1', '3']
  );
});

test('incremental metrics never duplicate a row', () => {
  const row = (rowid: number) => ({
    rowid,
    trial: 0,
    attempt: 0,
    rank: 0,
    seq: rowid,
    step: rowid,
    time: rowid,
    values: { loss: 1 / rowid }
  });
  const batch = (rows: number[]): IMetrics => ({
    trial: 0,
    since: 0,
    last_rowid: rows[rows.length - 1] ?? 0,
    rows: rows.map(row)
  });
  let seen = mergeMetrics([], batch([1, 2, 3]));
  seen = mergeMetrics(seen, batch([3, 4]));
  seen = mergeMetrics(seen, batch([]));
  assert.deepEqual(
    seen.map(r => r.rowid),
    [1, 2, 3, 4]
  );
});

test("a running job's reason names its nodes, a pending one's says why", () => {
  assert.equal(jobText({ job_id: '7', state: 'RUNNING', reason: 'node1' }), '7 RUNNING on node1');
  assert.equal(
    jobText({ job_id: '8', state: 'PENDING', reason: '(Resources)' }),
    '8 PENDING (Resources)'
  );
  assert.equal(jobText({ job_id: '9', state: 'PENDING', reason: '' }), '9 PENDING');
});
