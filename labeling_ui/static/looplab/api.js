// Calls to the public API v1 with the session cookie and Django's CSRF token.

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

// fetch JSON from the API; resolves to {status, data} (data is null for 204), rejects with ApiError.
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = cookie("csrftoken");
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", "The server cannot be reached. Check your connection and try again.");
  }
  if (response.status === 204) return { status: 204, data: null };
  let data = null;
  const text = await response.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const error = data && data.error;
    if (response.status === 401 || response.status === 403 && error && error.code === "not_authenticated") {
      throw new ApiError(response.status, "not_authenticated", "Your session has ended. Reload the page to sign in again.");
    }
    throw new ApiError(response.status, error ? error.code : "http_" + response.status,
      error ? error.message : `The server answered ${response.status}.`, error ? error.details : {});
  }
  return { status: response.status, data };
}
