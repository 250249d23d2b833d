/**
 * How the sidebar orders, filters and groups what it lists, and how it words a
 * cluster's idle clock. Pure: no DOM, unit-tested under node.
 */

import { FINISHED_STATES, ICluster, IIdle, ISearch } from './models';

/** Whether a search is still going: a live driver, or a state that is not final. */
export function isActive(search: ISearch): boolean {
  if (search.alive) {
    return true;
  }
  return !(
    FINISHED_STATES.includes(search.state) ||
    search.state.startsWith('unreadable') ||
    search.state.startsWith('missing') ||
    search.state === 'unknown'
  );
}

/**
 * Running searches first, then the others; newest first within each group (by start
 * time, then by name for searches that never started).
 */
export function orderSearches(searches: ISearch[]): ISearch[] {
  return [...searches].sort((a, b) => {
    const active = Number(isActive(b)) - Number(isActive(a));
    if (active !== 0) {
      return active;
    }
    const started = (b.started ?? 0) - (a.started ?? 0);
    return started !== 0 ? started : a.name.localeCompare(b.name);
  });
}

/**
 * The searches whose name, state, metric or store contain every word of `text`
 * (case-insensitive); all of them for an empty filter.
 */
export function filterSearches(searches: ISearch[], text: string): ISearch[] {
  const words = text.toLowerCase().split(/\s+/).filter(w => w);
  if (!words.length) {
    return searches;
  }
  return searches.filter(s => {
    const haystack = [s.name, s.state, s.metric ?? '', s.store].join(' ').toLowerCase();
    return words.every(w => haystack.includes(w));
  });
}

/** The list as the sidebar shows it: ordered, filtered, finished ones set apart. */
export function searchGroups(
  searches: ISearch[],
  filter: string
): { active: ISearch[]; finished: ISearch[] } {
  const shown = filterSearches(orderSearches(searches), filter);
  return { active: shown.filter(isActive), finished: shown.filter(s => !isActive(s)) };
}

/** "40 s", "12 min", "1 h 05 min". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s} s`;
  }
  const minutes = Math.floor(s / 60);
  return minutes < 60
    ? `${minutes} min`
    : `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/**
 * Whether "stop idle clusters" stops this one: no client and no task now, and an idle
 * timeout (a pinned cluster, or one without timeout, is kept).
 */
export function isIdle(cluster: ICluster): boolean {
  const idle = cluster.idle;
  return !!idle && idle.idle_for !== null && idle.timeout !== null;
}

/** How long until an idle cluster stops itself, as the card says it ('' without a clock). */
export function idleText(idle: IIdle | null): string {
  if (!idle) {
    return '';
  }
  if (idle.timeout === null) {
    return idle.idle_for !== null
      ? `idle for ${duration(idle.idle_for)}; no idle timeout`
      : 'no idle timeout';
  }
  if (idle.idle_for === null || idle.left === null) {
    return `in use; stops after ${duration(idle.timeout)} idle`;
  }
  return `idle for ${duration(idle.idle_for)}: stops in ${duration(idle.left)}`;
}
