import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MetricHistory, SPARK_HEIGHT, SPARK_WIDTH, polylinePoints } from '../history';
import { ISearchMetrics, ISeriesPoint } from '../models';

/** An answer of the metrics route holding `rows` (trial, value; step = value index). */
function answer(
  since: number,
  rows: Partial<ISeriesPoint>[],
  extra: Partial<ISearchMetrics> = {}
): ISearchMetrics {
  const full = rows.map((r, i) => ({
    rowid: since + i + 1,
    trial: 0,
    attempt: 0,
    step: null,
    value: 0,
    ...r
  }));
  return {
    metric: 'val_acc',
    since,
    last_rowid: full.length ? full[full.length - 1].rowid : since,
    more: false,
    rows: full,
    ...extra
  };
}

test('incremental answers build per-trial histories without duplicates', () => {
  const history = new MetricHistory('mnist');
  history.add(answer(0, [{ trial: 0, value: 0.1 }, { trial: 1, value: 0.5 }, { trial: 0, value: 0.3 }]));
  assert.equal(history.lastRowid, 3);
  // The same rows again (an overlapping poll) add nothing; new ones are appended.
  history.add(answer(0, [{ trial: 0, value: 0.1 }, { trial: 1, value: 0.5 }, { trial: 0, value: 0.3 }]));
  history.add(answer(3, [{ trial: 0, value: 0.2 }]));
  assert.deepEqual(history.trials(), [0, 1]);
  assert.deepEqual(
    history.points(0).map(p => p.y),
    [0.1, 0.3, 0.2]
  );
  assert.deepEqual(history.summary(0), {
    attempt: 0,
    reports: 3,
    first: 0.1,
    last: 0.2,
    min: 0.1,
    max: 0.3
  });
  assert.equal(history.lastRowid, 4);
  // Rows the server skipped (other metrics, other ranks) still move `since` on.
  history.add(answer(4, [], { last_rowid: 9 }));
  assert.equal(history.lastRowid, 9);
});

test('the tooltip gives first, last and best by the search mode', () => {
  const history = new MetricHistory('mnist');
  history.add(answer(0, [0.5, 0.9, 0.7].map(value => ({ value }))));
  assert.equal(history.tooltip(0, 'max'), 'val_acc, 3 reports: first 0.5, last 0.7, best 0.9');
  assert.equal(history.tooltip(0, 'min'), 'val_acc, 3 reports: first 0.5, last 0.7, best 0.5');
  assert.equal(history.tooltip(7, 'max'), '');
});

test('a new attempt starts the trial history again; late rows of the old one are dropped', () => {
  const history = new MetricHistory('mnist');
  history.add(answer(0, [{ value: 1 }, { value: 2 }]));
  history.add(answer(2, [{ value: 5, attempt: 1, step: 10 }, { value: 3, attempt: 0 }]));
  assert.deepEqual(history.points(0), [{ x: 10, y: 5 }]);
  assert.equal(history.summary(0)?.attempt, 1);
  assert.match(history.tooltip(0, 'max'), /1 report \(attempt 1\)/);
});

test('long trials are decimated to a bounded, evenly spaced series ending at the latest', () => {
  const max = 16;
  const history = new MetricHistory('mnist', max);
  let since = 0;
  for (let chunk = 0; chunk < 10; chunk++) {
    // 1000 reports of trial 0 (step = ordinal) in 10 polls, and one report of trial 1.
    const rows = Array.from({ length: 100 }, (_, i) => ({ step: chunk * 100 + i, value: chunk * 100 + i }));
    history.add(answer(since, [...rows, { trial: 1, value: 4 }]));
    since = history.lastRowid;
    const n = history.points(0).length;
    assert.ok(n <= max + 1, `kept ${n} points, more than ${max} + the latest`);
  }
  const points = history.points(0);
  assert.ok(points.length > max / 2, `only ${points.length} points kept`);
  const xs = points.map(p => p.x);
  // Every kept report is a multiple of one stride; the last point is the latest report.
  const stride = xs[1] - xs[0];
  assert.ok(stride > 1);
  assert.ok(xs.slice(0, -1).every((x, i) => x === i * stride));
  assert.equal(xs[xs.length - 1], 999);
  // The statistics cover every report, not just the kept ones.
  assert.deepEqual(history.summary(0), {
    attempt: 0,
    reports: 1000,
    first: 0,
    last: 999,
    min: 0,
    max: 999
  });
  assert.equal(history.summary(1)?.reports, 10);
});

test('a changed metric starts the whole history again', () => {
  const history = new MetricHistory('mnist');
  history.add(answer(0, [{ value: 1 }]));
  history.add(answer(5, [{ value: 2, trial: 3 }], { metric: 'loss' }));
  assert.equal(history.metric, 'loss');
  assert.deepEqual(history.trials(), [3]);
});

test('polyline points fill the sparkline box, y up, constant series at mid-height', () => {
  const points = [
    { x: 0, y: 0 },
    { x: 5, y: 1 },
    { x: 10, y: 0.5 }
  ];
  assert.equal(polylinePoints(points, 82, 12), '1,11 41,1 81,6');
  assert.equal(
    polylinePoints(
      [
        { x: 1, y: 3 },
        { x: 2, y: 3 }
      ],
      10,
      10
    ),
    '1,5 9,5'
  );
  assert.equal(polylinePoints([], 10, 10), '');
  const history = new MetricHistory('mnist');
  history.add(answer(0, [{ value: 1 }, { value: 2 }, { value: 0 }]));
  const line = history.polyline(0);
  assert.equal(line.split(' ').length, 3);
  for (const pair of line.split(' ')) {
    const [x, y] = pair.split(',').map(Number);
    assert.ok(x >= 0 && x <= SPARK_WIDTH && y >= 0 && y <= SPARK_HEIGHT, pair);
  }
  assert.equal(history.polyline(9), '');
});
