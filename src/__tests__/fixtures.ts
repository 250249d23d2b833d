/** A search as the REST API lists it, for the sidebar's unit tests: change what matters. */

import { ISearch } from '../models';

export function searchOf(overrides: Partial<ISearch> = {}): ISearch {
  const name = overrides.name ?? 'mnist';
  return {
    name,
    store: `/runs/${name}.kale.sqlite`,
    cluster: 'kc-1',
    started: 1,
    state: 'running',
    alive: true,
    metric: 'val_acc',
    mode: 'max',
    planned: 8,
    trials: {},
    best: null,
    ...overrides
  };
}
