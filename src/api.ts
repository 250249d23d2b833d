/** Typed calls of every kale/api route, over `requestAPI`. */

import { ServerConnection } from '@jupyterlab/services';

import {
  ICluster,
  IClusterAction,
  IControl,
  IControlBody,
  IFailedStart,
  IForget,
  IMetrics,
  IPatchClusterBody,
  IProfiles,
  ISearch,
  ISearchDetail,
  ISearchMetrics,
  IStartClusterBody,
  ITrial
} from './models';
import { requestAPI, sendJSON } from './request';
import { ITrialQuery, queryString } from './trialpages';

const enc = encodeURIComponent;

export class KaleAPI {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  clusters(): Promise<ICluster[]> {
    return requestAPI<ICluster[]>('clusters', {}, this.settings);
  }

  cluster(id: string): Promise<ICluster> {
    return requestAPI<ICluster>(`clusters/${enc(id)}`, {}, this.settings);
  }

  startCluster(body: IStartClusterBody): Promise<ICluster> {
    return sendJSON<ICluster>('clusters', 'POST', body, this.settings);
  }

  patchCluster(id: string, body: IPatchClusterBody): Promise<IClusterAction> {
    return sendJSON<IClusterAction>(`clusters/${enc(id)}`, 'PATCH', body, this.settings);
  }

  stopCluster(id: string): Promise<IClusterAction> {
    return sendJSON<IClusterAction>(`clusters/${enc(id)}`, 'DELETE', undefined, this.settings);
  }

  /** Cluster starts that failed, newest first, until dismissed. */
  failedStarts(): Promise<IFailedStart[]> {
    return requestAPI<IFailedStart[]>('failed-starts', {}, this.settings);
  }

  dismissFailedStart(id: string): Promise<IClusterAction> {
    return sendJSON<IClusterAction>(`failed-starts/${enc(id)}`, 'DELETE', undefined, this.settings);
  }

  profiles(): Promise<IProfiles> {
    return requestAPI<IProfiles>('profiles', {}, this.settings);
  }

  searches(): Promise<ISearch[]> {
    return requestAPI<ISearch[]>('searches', {}, this.settings);
  }

  search(name: string): Promise<ISearchDetail> {
    return requestAPI<ISearchDetail>(`searches/${enc(name)}`, {}, this.settings);
  }

  /** Forget a search; `deleteFiles` also deletes its store and checkpoint folders. */
  forgetSearch(name: string, deleteFiles: boolean): Promise<IForget> {
    const query = deleteFiles ? '?delete_files=1' : '';
    return sendJSON<IForget>(`searches/${enc(name)}${query}`, 'DELETE', undefined, this.settings);
  }

  /** A search's trials: all of them, or one page (`state`, `order`, `limit`). */
  trials(name: string, query: ITrialQuery = {}): Promise<ITrial[]> {
    return requestAPI<ITrial[]>(
      `searches/${enc(name)}/trials${queryString(query)}`,
      {},
      this.settings
    );
  }

  metrics(name: string, trial: number, since = 0): Promise<IMetrics> {
    return requestAPI<IMetrics>(
      `searches/${enc(name)}/trials/${trial}/metrics?since=${since}`,
      {},
      this.settings
    );
  }

  /**
   * One metric (default: the search's own) of every trial after row id `since`; at
   * most `limit` stored rows per answer, `more` when others remain.
   */
  searchMetrics(
    name: string,
    since = 0,
    options: { metric?: string; limit?: number } = {}
  ): Promise<ISearchMetrics> {
    const query = new URLSearchParams({ since: String(since) });
    if (options.metric !== undefined) {
      query.set('metric', options.metric);
    }
    if (options.limit !== undefined) {
      query.set('limit', String(options.limit));
    }
    return requestAPI<ISearchMetrics>(
      `searches/${enc(name)}/metrics?${query.toString()}`,
      {},
      this.settings
    );
  }

  control(name: string, body: IControlBody): Promise<IControl> {
    return sendJSON<IControl>(`searches/${enc(name)}/control`, 'POST', body, this.settings);
  }
}
