// HTTP to this spheroseg with the optional bearer token: asked for once on a 401 and kept for the
// tab's session.

export const TOKEN_KEY = "spheroseg-token";

export function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: `Bearer ${t}` } : {};
}

export async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (resp.status === 401) {
    const t = prompt("This spheroseg needs its access token:");
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t);
      return api(path, options);
    }
  }
  return resp;
}

export async function json(path, options) {
  const resp = await api(path, options);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.message || `${resp.status}`);
  return body;
}
