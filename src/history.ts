/**
 * The metric history of one search, kept in the browser for the sidebar's sparklines.
 *
 * Fed incrementally from `GET kale/api/searches/<name>/metrics?since=<rowid>`. Each
 * trial keeps a bounded number of points: every `stride`-th report, the stride doubling
 * (and every other kept point dropped) whenever the bound is passed, so hundreds of
 * long trials stay cheap to hold and to draw. First, last, min and max are exact.
 * Pure: no DOM, unit-tested under node.
 */

import { ISearchMetrics, ISeriesPoint, formatNumber } from './models';

/** Size of a sparkline in CSS pixels. */
export const SPARK_WIDTH = 80;
export const SPARK_HEIGHT = 18;

/** Points kept per trial: the bound is between this and half of it. */
export const MAX_POINTS = 160;

export interface IPoint {
  x: number;
  y: number;
}

export interface ISummary {
  attempt: number;
  reports: number;
  first: number;
  last: number;
  min: number;
  max: number;
}

/** One trial's current attempt: decimated points and exact statistics. */
class TrialSeries {
  readonly points: IPoint[] = [];
  stride = 1;
  reports = 0;
  first = NaN;
  last = NaN;
  min = Infinity;
  max = -Infinity;
  latest: IPoint | null = null;
  polyline: string | null = null;

  constructor(readonly attempt: number) {}

  add(step: number | null, value: number, maxPoints: number): void {
    const ordinal = this.reports;
    const point = { x: step ?? ordinal, y: value };
    this.reports += 1;
    if (ordinal === 0) {
      this.first = value;
    }
    this.last = value;
    this.min = Math.min(this.min, value);
    this.max = Math.max(this.max, value);
    this.latest = point;
    this.polyline = null;
    // Kept points are the reports whose ordinal is a multiple of the stride.
    if (ordinal % this.stride === 0) {
      this.points.push(point);
      if (this.points.length > maxPoints) {
        let kept = 0;
        for (let k = 0; k < this.points.length; k += 2) {
          this.points[kept++] = this.points[k];
        }
        this.points.length = kept;
        this.stride *= 2;
      }
    }
  }

  /** The kept points, ending with the latest report so the line reaches it. */
  series(): IPoint[] {
    const keptLast = (this.points.length - 1) * this.stride;
    return this.latest !== null && keptLast !== this.reports - 1
      ? [...this.points, this.latest]
      : this.points.slice();
  }
}

export class MetricHistory {
  /** The `since` of the next request. */
  lastRowid = 0;
  /** The metric the server answered with (the search's own unless asked otherwise). */
  metric: string | null = null;
  private _trials = new Map<number, TrialSeries>();

  constructor(
    readonly search: string,
    readonly maxPoints = MAX_POINTS
  ) {}

  /**
   * Add an answer of the metrics route. Rows already seen are skipped, so a repeated
   * or overlapping answer adds nothing; a trial's new attempt starts its history again.
   */
  add(batch: ISearchMetrics): void {
    if (this.metric !== null && batch.metric !== this.metric) {
      this._trials.clear();
      this.lastRowid = 0;
    }
    this.metric = batch.metric;
    for (const row of batch.rows) {
      if (row.rowid > this.lastRowid) {
        this._addRow(row);
      }
    }
    this.lastRowid = Math.max(this.lastRowid, batch.last_rowid);
  }

  private _addRow(row: ISeriesPoint): void {
    let series = this._trials.get(row.trial);
    if (series === undefined || row.attempt > series.attempt) {
      series = new TrialSeries(row.attempt);
      this._trials.set(row.trial, series);
    } else if (row.attempt < series.attempt) {
      return; // a late row of an attempt already replaced
    }
    series.add(row.step, row.value, this.maxPoints);
  }

  /** Trial numbers with at least one point, ascending. */
  trials(): number[] {
    return [...this._trials.keys()].sort((a, b) => a - b);
  }

  /** The points to draw for `trial` (at most `maxPoints + 1`). */
  points(trial: number): IPoint[] {
    return this._trials.get(trial)?.series() ?? [];
  }

  summary(trial: number): ISummary | null {
    const s = this._trials.get(trial);
    if (s === undefined) {
      return null;
    }
    return {
      attempt: s.attempt,
      reports: s.reports,
      first: s.first,
      last: s.last,
      min: s.min,
      max: s.max
    };
  }

  /** The `points` attribute of `trial`'s sparkline ('' without points), cached. */
  polyline(trial: number): string {
    const s = this._trials.get(trial);
    if (s === undefined) {
      return '';
    }
    s.polyline ??= polylinePoints(s.series(), SPARK_WIDTH, SPARK_HEIGHT);
    return s.polyline;
  }

  /** "val_acc, 120 reports: first 0.1, last 0.8, best 0.82" (best by `mode`). */
  tooltip(trial: number, mode: string | null): string {
    const s = this.summary(trial);
    if (s === null) {
      return '';
    }
    const best = mode === 'min' ? s.min : s.max;
    const attempt = s.attempt > 0 ? ` (attempt ${s.attempt})` : '';
    return (
      `${this.metric ?? 'metric'}, ${s.reports} report${s.reports === 1 ? '' : 's'}${attempt}: ` +
      `first ${formatNumber(s.first)}, last ${formatNumber(s.last)}, best ${formatNumber(best)}`
    );
  }
}

/**
 * Points scaled into a `width` x `height` box (1 px inset, y up) as "x,y x,y ...".
 * A constant series is a flat line at mid-height.
 */
export function polylinePoints(points: IPoint[], width: number, height: number): string {
  if (!points.length) {
    return '';
  }
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const p of points) {
    x0 = Math.min(x0, p.x);
    x1 = Math.max(x1, p.x);
    y0 = Math.min(y0, p.y);
    y1 = Math.max(y1, p.y);
  }
  const inset = 1;
  const w = width - 2 * inset;
  const h = height - 2 * inset;
  const sx = (x: number) => inset + (x1 > x0 ? ((x - x0) / (x1 - x0)) * w : w / 2);
  const sy = (y: number) => inset + (y1 > y0 ? (1 - (y - y0) / (y1 - y0)) * h : h / 2);
  return points.map(p => `${round(sx(p.x))},${round(sy(p.y))}`).join(' ');
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
