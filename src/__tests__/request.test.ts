import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ServerConnection } from '@jupyterlab/services';

import { KaleAPI } from '../api';
import { KaleApiError, requestAPI } from '../request';

interface ISeen {
  url: string;
  method: string;
  headers: Headers;
  body: string;
}

/** Server settings whose fetch records each request and answers with `reply`. */
function fakeServer(reply: (seen: ISeen) => Response): {
  settings: ServerConnection.ISettings;
  seen: ISeen[];
} {
  const seen: ISeen[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input as RequestInfo, init);
    const entry = {
      // makeRequest appends a cache-busting timestamp; the route is what matters here.
      url: request.url.replace(/[?&]\d{13}$/, ''),
      method: request.method,
      headers: request.headers,
      body: await request.text()
    };
    seen.push(entry);
    return reply(entry);
  };
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://127.0.0.1:8888/lab-base/',
    wsUrl: 'ws://127.0.0.1:8888/lab-base/',
    token: 'secret-token',
    appendToken: false,
    fetch: fetch as typeof globalThis.fetch,
    Request,
    Headers
  });
  return { settings, seen };
}

const json = (data: unknown, status = 200) =>
  new Response(JSON.stringify(data), {
    status,
    headers: { 'Content-Type': 'application/json' }
  });

test('requestAPI joins the base URL, sends the token and parses JSON', async () => {
  const { settings, seen } = fakeServer(() => json([{ id: 'kc-1' }]));
  const data = await requestAPI<{ id: string }[]>('clusters', {}, settings);
  assert.deepEqual(data, [{ id: 'kc-1' }]);
  assert.equal(seen[0].url, 'http://127.0.0.1:8888/lab-base/kale/api/clusters');
  assert.equal(seen[0].method, 'GET');
  assert.equal(seen[0].headers.get('Authorization'), 'token secret-token');
});

test('an error answer becomes a KaleApiError with the server message', async () => {
  const { settings } = fakeServer(() =>
    json({ message: "Field 'workers' must be an integer >= 0, but got workers=-1.", reason: null }, 400)
  );
  await assert.rejects(
    requestAPI('clusters', { method: 'POST', body: '{"workers": -1}' }, settings),
    (error: unknown) => {
      assert.ok(error instanceof KaleApiError);
      assert.equal(error.status, 400);
      assert.match(error.message, /'workers' must be an integer/);
      return true;
    }
  );
});

test('a non-JSON error keeps the status and text', async () => {
  const { settings } = fakeServer(() => new Response('gateway down', { status: 502 }));
  await assert.rejects(requestAPI('profiles', {}, settings), /502.*gateway down/);
});

test('KaleAPI sends typed bodies with the right methods and paths', async () => {
  const { settings, seen } = fakeServer(entry =>
    json(entry.method === 'DELETE' ? { id: 'kc 1', message: 'stopped' } : { ok: true })
  );
  const api = new KaleAPI(settings);
  await api.startCluster({ profile: 'local', workers: 2 });
  await api.patchCluster('kc 1', { workers: 4 });
  const stopped = await api.stopCluster('kc 1');
  await api.control('mnist', { action: 'stop', trial: 3 });
  await api.metrics('mnist', 3, 42);
  await api.searchMetrics('mnist', 42);
  await api.searchMetrics('mnist', 0, { metric: 'val loss', limit: 10 });
  assert.equal(stopped.message, 'stopped');
  assert.deepEqual(
    seen.map(s => `${s.method} ${s.url.replace('http://127.0.0.1:8888/lab-base/kale/api/', '')}`),
    [
      'POST clusters',
      'PATCH clusters/kc%201',
      'DELETE clusters/kc%201',
      'POST searches/mnist/control',
      'GET searches/mnist/trials/3/metrics?since=42',
      'GET searches/mnist/metrics?since=42',
      'GET searches/mnist/metrics?since=0&metric=val+loss&limit=10'
    ]
  );
  assert.deepEqual(JSON.parse(seen[0].body), { profile: 'local', workers: 2 });
  assert.equal(seen[0].headers.get('Content-Type'), 'application/json');
  assert.deepEqual(JSON.parse(seen[3].body), { action: 'stop', trial: 3 });
});
