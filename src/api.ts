/** Typed calls of every kale/api route, over `requestAPI`. */

import { ServerConnection } from '@jupyterlab/services';

import {
  ICluster,
  IClusterAction,
  IControl,
  IControlBody,
  IMetrics,
  IPatchClusterBody,
  IProfiles,
  ISearch,
  ISearchDetail,
  IStartClusterBody,
  ITrial
} from './models';
import { requestAPI, sendJSON } from './request';

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

  profiles(): Promise<IProfiles> {
    return requestAPI<IProfiles>('profiles', {}, this.settings);
  }

  searches(): Promise<ISearch[]> {
    return requestAPI<ISearch[]>('searches', {}, this.settings);
  }

  search(name: string): Promise<ISearchDetail> {
    return requestAPI<ISearchDetail>(`searches/${enc(name)}`, {}, this.settings);
  }

  trials(name: string): Promise<ITrial[]> {
    return requestAPI<ITrial[]>(`searches/${enc(name)}/trials`, {}, this.settings);
  }

  metrics(name: string, trial: number, since = 0): Promise<IMetrics> {
    return requestAPI<IMetrics>(
      `searches/${enc(name)}/trials/${trial}/metrics?since=${since}`,
      {},
      this.settings
    );
  }

  control(name: string, body: IControlBody): Promise<IControl> {
    return sendJSON<IControl>(`searches/${enc(name)}/control`, 'POST', body, this.settings);
  }
}
