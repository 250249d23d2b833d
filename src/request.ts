/** The one typed wrapper around the kale/api routes of the server extension. */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error answer of the kale API: the HTTP status and the server's message. */
export class KaleApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
    this.name = 'KaleApiError';
  }
}

/**
 * Call `kale/api/<endPoint>` and return its JSON body as `T`.
 *
 * The request goes through `ServerConnection.makeRequest`, which adds the token and
 * the XSRF header; a non-2xx answer becomes a `KaleApiError` carrying the server's
 * message (which names the field and the rule for a 400, the id for a 404).
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'kale', 'api', endPoint);
  if (init.body !== undefined && !(init.headers as Record<string, string>)?.['Content-Type']) {
    init = { ...init, headers: { ...(init.headers ?? {}), 'Content-Type': 'application/json' } };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: unknown = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text for the error message
    }
  }
  if (!response.ok) {
    const message =
      data && typeof data === 'object' && 'message' in data
        ? String((data as { message: unknown }).message)
        : `${response.status} ${response.statusText}: ${text}`;
    throw new KaleApiError(response.status, message);
  }
  return data as T;
}

/** `requestAPI` with a JSON body. */
export function sendJSON<T>(
  endPoint: string,
  method: 'POST' | 'PATCH' | 'DELETE',
  body?: unknown,
  settings?: ServerConnection.ISettings
): Promise<T> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
  }
  return requestAPI<T>(endPoint, init, settings);
}
