// The HTTP API of this same server, called with the admin key the user typed in. The key
// lives in localStorage only (the server never embeds it in a page).

const KEY_STORAGE = 'frazil.adminKey';

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return '';
  }
}

export function setKey(key) {
  localStorage.setItem(KEY_STORAGE, key);
}

export function clearKey() {
  try {
    localStorage.removeItem(KEY_STORAGE);
  } catch { /* storage unavailable: nothing to clear */ }
}

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const message = (body && typeof body === 'object' && body.message) || fallback || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.body = body;
    this.type = body && body.error && body.error.type;
  }
}

// Tell the app that the key is missing or no longer valid.
function unauthorized(error) {
  window.dispatchEvent(new CustomEvent('frazil:unauthorized', { detail: error }));
}

async function parseBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// fetch() a JSON API route. `json` is sent as the JSON body; `body` as it is.
export async function api(path, { method = 'GET', json, body, contentType, params, signal, key = getKey(), quiet401 = false } = {}) {
  let url = path;
  if (params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') qs.set(k, v);
    const s = qs.toString();
    if (s) url += (url.includes('?') ? '&' : '?') + s;
  }
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (contentType) {
    headers['Content-Type'] = contentType;
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body, signal, cache: 'no-store', credentials: 'omit' });
  } catch (exc) {
    if (exc.name === 'AbortError') throw exc;
    throw new ApiError(0, null, `cannot reach the server (${exc.message})`);
  }
  const data = await parseBody(response);
  if (!response.ok) {
    const error = new ApiError(response.status, data, response.statusText);
    if (response.status === 401 && !quiet401) unauthorized(error);
    throw error;
  }
  return { status: response.status, data };
}

// A deploy: multipart upload with progress (fetch cannot report upload progress; XHR can).
export function deployUpload(name, file, filename, config, { onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append('bundle', file, filename);
    form.append('config', JSON.stringify(config));
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `/v1/functions/${encodeURIComponent(name)}`);
    xhr.setRequestHeader('Authorization', `Bearer ${getKey()}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.responseType = 'text';
    if (onProgress) {
      xhr.upload.addEventListener('progress', (e) => onProgress(e.lengthComputable ? e.loaded / e.total : null, e.loaded));
      xhr.upload.addEventListener('load', () => onProgress(1, null, true));
    }
    xhr.addEventListener('load', () => {
      let data = null;
      try {
        data = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        data = xhr.responseText;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve({ status: xhr.status, data });
      else {
        const error = new ApiError(xhr.status, data, xhr.statusText);
        if (xhr.status === 401) unauthorized(error);
        reject(error);
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, null, 'the upload failed: cannot reach the server')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, null, 'the upload was cancelled')));
    xhr.send(form);
  });
}

export const fnPath = (name, rest = '') => `/v1/functions/${encodeURIComponent(name)}${rest}`;
