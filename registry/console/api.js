// The registry's API as the console calls it. The operations come from the
// registry's own OpenAPI document (`/openapi.json`): a call names an
// operationId (the Rust handler's name), and its method and path template
// are read from the document, so the console calls what the registry says
// it serves; an operation the document lacks throws.
//
// The bearer token lives in this module's `token` variable and nowhere
// else: not in localStorage, sessionStorage, a cookie or a URL. Reloading
// the page forgets it, as signing out does.

let token = null;
let operations = null;

/** A refusal by the registry: its status and its `{"error": ...}` message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** Reads `/openapi.json` once and indexes its operations by operationId. */
export async function load() {
  const response = await fetch('/openapi.json', { credentials: 'omit', cache: 'no-store' });
  if (!response.ok) {
    throw new Error(`the registry's API description (/openapi.json) answered ${response.status}`);
  }
  const document = await response.json();
  // A relative server URL (`/`) is a prefix of every path; an absolute one
  // would be another origin, which the console never calls.
  const server = document.servers?.[0]?.url;
  const prefix = typeof server === 'string' && /^\/(?!\/)/.test(server) ? server.replace(/\/+$/, '') : '';
  operations = new Map();
  for (const [path, item] of Object.entries(document.paths || {})) {
    for (const method of ['get', 'put', 'post', 'delete', 'patch']) {
      const operation = item[method];
      if (operation?.operationId) {
        operations.set(operation.operationId, { method: method.toUpperCase(), path: prefix + path });
      }
    }
  }
  return operations;
}

/** Whether the document names this operation. */
export function has(operationId) {
  return operations?.has(operationId) ?? false;
}

export function setToken(value) {
  token = value || null;
}

export function forgetToken() {
  token = null;
}

export function signedIn() {
  return token !== null;
}

function expand(template, pathParams) {
  return template.replace(/\{([^}]+)\}/g, (_, name) => {
    const value = pathParams[name];
    if (value === undefined || value === null || value === '') {
      throw new Error(`${template} needs the path parameter ${name}`);
    }
    // encodeURIComponent leaves `.` and `..` as they are, and the URL
    // parser would resolve them to another endpoint.
    if (value === '.' || value === '..') {
      throw new Error(`${template}: ${name} cannot be ${JSON.stringify(value)}`);
    }
    return encodeURIComponent(String(value));
  });
}

/**
 * Calls an operation of the registry's document:
 * `call('get_version', {pathParams: {model, version}})`. Resolves with the
 * JSON answer (`null` for 204); rejects with an ApiError carrying the
 * registry's message, or an Error for an unknown operation.
 */
export async function call(operationId, { pathParams = {}, query = {}, body } = {}) {
  if (operations === null) {
    throw new Error('the API description is not loaded yet');
  }
  const operation = operations.get(operationId);
  if (!operation) {
    throw new Error(`the registry's API has no operation ${operationId}`);
  }
  const url = new URL(expand(operation.path, pathParams), window.location.origin);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') {
      url.searchParams.set(name, String(value));
    }
  }
  const headers = { Accept: 'application/json' };
  if (token !== null) {
    headers.Authorization = `Bearer ${token}`;
  }
  const init = { method: operation.method, headers, credentials: 'omit', cache: 'no-store', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, `the registry did not answer: ${err.message}`);
  }
  if (response.status === 204) {
    return null;
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = typeof data?.error === 'string' ? data.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

/** Like `call`, but `fallback` for a 404: for things that may not exist yet. */
export async function callOr404(operationId, options, fallback = null) {
  try {
    return await call(operationId, options);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      return fallback;
    }
    throw err;
  }
}
