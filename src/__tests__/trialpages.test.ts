import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ISearch, ITrial } from '../models';
import { searchOf } from './fixtures';
import { leftOutText, mergePages, queryString, totalTrials, trialQueries } from '../trialpages';

function search(trials: Record<string, number>): ISearch {
  return searchOf({ name: 's', planned: 10000, trials });
}

function trial(number: number): ITrial {
  return { number, state: 'running', params: {}, attempt: 0, worker: null, job_id: null,
           started: null, ended: null, last: {}, best: null, best_step: null, error: null,
           checkpoint: null, retries: 0, updated: null } as unknown as ITrial;
}

test('a small search is listed whole, a large one by its running and best trials', () => {
  assert.equal(totalTrials(search({ running: 3, completed: 40 })), 43);
  assert.deepEqual(trialQueries(search({ completed: 50 }), 50), [{}]);
  assert.deepEqual(trialQueries(search({ running: 16, completed: 9984 }), 50), [
    { state: 'running', limit: 50 },
    { order: 'best', limit: 50 }
  ]);
});

test('pages become query strings and merge without repeats', () => {
  assert.equal(queryString({}), '');
  assert.equal(queryString({ state: 'running', limit: 50 }), '?state=running&limit=50');
  assert.equal(queryString({ order: 'best', limit: 100 }), '?order=best&limit=100');
  const merged = mergePages([[trial(7), trial(3)], [trial(3), trial(9), trial(7), trial(1)]]);
  assert.deepEqual(merged.map(t => t.number), [7, 3, 9, 1]);
});

test('the list says what it leaves out', () => {
  assert.equal(leftOutText(search({ completed: 20 }), 20), '');
  assert.equal(leftOutText(search({ running: 16, completed: 9984 }), 66),
               '66 of 10000 trials: the running ones and the best');
});
