/**
 * Which trials the sidebar asks for, so that a search of ten thousand trials costs it
 * what a search of fifty does: every trial of a small search; the running ones and the
 * best ones of a large one. Pure: no DOM, unit-tested under node.
 */

import { ISearch, ITrial } from './models';

/** How many trials the sidebar lists at first (each "show more" doubles it). */
export const TRIALS_SHOWN = 50;

/** One page of `GET searches/<name>/trials`. */
export interface ITrialQuery {
  state?: string;
  order?: 'number' | 'best';
  limit?: number;
}

/** The number of trials a search has, by its summary's counts. */
export function totalTrials(search: ISearch): number {
  return Object.values(search.trials).reduce((sum, n) => sum + n, 0);
}

/** The pages to ask for: all trials up to `shown`, else the running and the best `shown`. */
export function trialQueries(search: ISearch, shown: number): ITrialQuery[] {
  if (totalTrials(search) <= shown) {
    return [{}];
  }
  return [
    { state: 'running', limit: shown },
    { order: 'best', limit: shown }
  ];
}

/** The query string of one page ('' for every trial). */
export function queryString(query: ITrialQuery): string {
  const parts = Object.entries(query)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${encodeURIComponent(String(value))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

/** The pages merged: each trial once, in the order the pages gave them. */
export function mergePages(pages: ITrial[][]): ITrial[] {
  const seen = new Set<number>();
  const out: ITrial[] = [];
  for (const trial of pages.flat()) {
    if (!seen.has(trial.number)) {
      seen.add(trial.number);
      out.push(trial);
    }
  }
  return out;
}

/** What the list leaves out, in words; '' when it lists every trial. */
export function leftOutText(search: ISearch, listed: number): string {
  const total = totalTrials(search);
  return listed < total
    ? `${listed} of ${total} trials: the running ones and the best`
    : '';
}
