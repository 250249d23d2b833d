import assert from 'node:assert/strict';
import { test } from 'node:test';

import { duration, filterSearches, idleText, isActive, isIdle, orderSearches, searchGroups } from '../lists';
import { ICluster, ISearch } from '../models';
import { searchOf } from './fixtures';

function search(name: string, overrides: Partial<ISearch> = {}): ISearch {
  return searchOf({ name, started: 100, state: 'completed', alive: false, planned: 4,
                    trials: { completed: 4 }, ...overrides });
}

const names = (searches: ISearch[]) => searches.map(s => s.name);

test('running searches come first, newest first within each group', () => {
  const list = [
    search('old-done', { started: 1 }),
    search('new-done', { started: 50 }),
    search('old-running', { started: 2, state: 'running', alive: true }),
    search('new-running', { started: 60, state: 'running', alive: true }),
    search('paused', { started: 3, state: 'paused', alive: true }),
    search('never-started', { started: null, state: 'created' })
  ];
  assert.deepEqual(names(orderSearches(list)), [
    'new-running',
    'paused',
    'old-running',
    'never-started',
    'new-done',
    'old-done'
  ]);
  assert.deepEqual(names(list), names(list)); // the input is left as it was
});

test('finished, unreadable and missing searches are not active; live ones are', () => {
  assert.equal(isActive(search('a')), false);
  assert.equal(isActive(search('b', { state: 'unreadable: no store' })), false);
  assert.equal(isActive(search('c', { state: 'missing: its store is gone' })), false);
  assert.equal(isActive(search('d', { state: 'running', alive: true })), true);
  // A driver that died mid-run leaves 'running' in the store: still listed on top.
  assert.equal(isActive(search('e', { state: 'running', alive: false })), true);
});

test('the filter matches every word in name, state, metric or store', () => {
  const list = [
    search('mnist-tpe', { metric: 'val_acc' }),
    search('cifar-asha', { metric: 'loss', state: 'running', alive: true }),
    search('mnist-grid', { state: 'stopped' })
  ];
  assert.deepEqual(names(filterSearches(list, '')), names(list));
  assert.deepEqual(names(filterSearches(list, 'MNIST')), ['mnist-tpe', 'mnist-grid']);
  assert.deepEqual(names(filterSearches(list, 'mnist stopped')), ['mnist-grid']);
  assert.deepEqual(names(filterSearches(list, 'loss')), ['cifar-asha']);
  assert.deepEqual(names(filterSearches(list, 'nothing')), []);
});

test('groups: active ones ordered and shown, finished ones set apart', () => {
  const list = [
    search('done-1', { started: 5 }),
    search('live', { started: 1, state: 'running', alive: true }),
    search('done-2', { started: 9 })
  ];
  const groups = searchGroups(list, '');
  assert.deepEqual(names(groups.active), ['live']);
  assert.deepEqual(names(groups.finished), ['done-2', 'done-1']);
  assert.deepEqual(names(searchGroups(list, 'done-1').finished), ['done-1']);
});

test('the idle clock is worded with the time left', () => {
  assert.equal(duration(42), '42 s');
  assert.equal(duration(12 * 60 + 5), '12 min');
  assert.equal(duration(3900), '1 h 05 min');
  assert.equal(idleText(null), '');
  assert.equal(idleText({ timeout: 3600, idle_for: null, left: null }), 'in use; stops after 1 h 00 min idle');
  assert.equal(idleText({ timeout: 3600, idle_for: 600, left: 3000 }), 'idle for 10 min: stops in 50 min');
  assert.equal(idleText({ timeout: null, idle_for: 90, left: null }), 'idle for 1 min; no idle timeout');
});

test('only idle clusters with a timeout are stopped as idle', () => {
  const cluster = (idle: ICluster['idle']): ICluster => ({
    id: 'kc-1',
    backend: 'dask',
    kind: 'local',
    state: 'running',
    address: '',
    dashboard: null,
    workers: [],
    jobs: [],
    detail: '',
    idle,
    cores: 0,
    memory: 0,
    n_workers: 0
  });
  assert.equal(isIdle(cluster(null)), false);
  assert.equal(isIdle(cluster({ timeout: 60, idle_for: null, left: null })), false);
  assert.equal(isIdle(cluster({ timeout: 60, idle_for: 10, left: 50 })), true);
  assert.equal(isIdle(cluster({ timeout: null, idle_for: 10, left: null })), false); // pinned
});
