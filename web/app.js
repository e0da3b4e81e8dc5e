// MMT's web page: no framework, no build step, no third-party host. It talks only to the
// selected API.
"use strict";

const STORAGE_API = "mmt.api";
const STORAGE_TOKEN = "mmt.token";
const config = window.__MMT_CONFIG || {};
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Which API: ?api= beats config.js beats the saved choice beats same-origin. A link can name
// any API, so one this deployment does not list (same-origin, config.js) is used only after
// the user confirms it, and a token is only ever sent to the origin that issued it.
// ---------------------------------------------------------------------------------------------

function validApi(raw) {
  try {
    const url = new URL(raw);
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    return url.href.replace(/\/+$/, "");
  } catch {
    return null;
  }
}

function originOf(base) {
  return new URL(base).origin;
}

/// The origins this deployment lists: the page's own and those config.js names.
function listedOrigins() {
  const listed = new Set([location.origin]);
  for (const raw of [config.API_BASE_URL, config.PRODUCTION_API_BASE_URL]) {
    const base = validApi(raw || "");
    if (base) listed.add(originOf(base));
  }
  return listed;
}

function isListed(base) {
  return listedOrigins().has(originOf(base));
}

function chooseApi() {
  const fromQuery = validApi(new URLSearchParams(location.search).get("api") || "");
  if (fromQuery) return { base: fromQuery, source: "query" };
  const fromConfig = validApi(config.API_BASE_URL || "");
  if (fromConfig) return { base: fromConfig, source: "config" };
  const saved = validApi(localStorage.getItem(STORAGE_API) || "");
  if (saved) return { base: saved, source: "saved" };
  return { base: location.origin, source: "same-origin" };
}

/// The API the page would use without the link's ?api=.
function chooseWithoutLink() {
  const fromConfig = validApi(config.API_BASE_URL || "");
  if (fromConfig) return { base: fromConfig, source: "config" };
  const saved = validApi(localStorage.getItem(STORAGE_API) || "");
  if (saved) return { base: saved, source: "saved" };
  return { base: location.origin, source: "same-origin" };
}

let api = chooseApi();
/// A link's unlisted API waits here, and nothing is sent to it, until the user confirms it.
let pendingApi = null;
if (api.source === "query" && !isListed(api.base)) {
  pendingApi = api;
  api = chooseWithoutLink();
}

/// The signed-in token and the origin of the API that issued it: { origin, value }.
function loadToken() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE_TOKEN) || "null");
    if (stored && typeof stored.value === "string" && stored.origin === originOf(api.base)) return stored;
  } catch {
    /* an older page's plain string, or damaged: sign in again */
  }
  return null;
}

/// `extra`: what a sign-in through the identity provider keeps beside the access token (its
/// refresh token, ID token, expiry and endpoints), for the silent renewal and the sign-out.
function saveToken(value, extra = {}) {
  token = Object.assign({ origin: originOf(api.base), value }, extra);
  sessionStorage.setItem(STORAGE_TOKEN, JSON.stringify(token));
}

function forgetToken() {
  token = null;
  sessionStorage.removeItem(STORAGE_TOKEN);
}

let token = loadToken();
let status = null;

function url(path) {
  return api.base + path;
}

/// The Authorization header for a request to `target`: only to the origin that issued the
/// token, whatever API is selected meanwhile.
function authorizationFor(target) {
  if (!token || new URL(target).origin !== token.origin) return null;
  return "Bearer " + token.value;
}

async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const authorization = authorizationFor(url(path));
  if (authorization) headers.Authorization = authorization;
  const response = await fetch(url(path), Object.assign({}, options, { headers }));
  return response;
}

/// The API's error message, in plain words.
async function problem(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch {
    /* not JSON */
  }
  return `the server answered ${response.status}`;
}

function showError(message) {
  $("error").textContent = message || "";
}

// ---------------------------------------------------------------------------------------------
// Banner, API switcher, health.
// ---------------------------------------------------------------------------------------------

function setBanner(kind, text) {
  const banner = $("banner");
  banner.className = "banner banner-" + kind;
  banner.textContent = text;
}

/// Shows the confirmation for a link's unlisted API; nothing has been sent to it.
function renderPendingApi() {
  $("api-confirm").hidden = !pendingApi;
  if (pendingApi) $("api-confirm-origin").textContent = originOf(pendingApi.base);
}

async function refreshStatus() {
  $("api-base").textContent = api.base;
  renderPendingApi();
  try {
    const response = await fetch(url("/demo/status"));
    if (!response.ok) throw new Error(`/demo/status answered ${response.status}`);
    status = await response.json();
    if (!isListed(api.base)) {
      // Any server can answer /demo/status like MMT: an unlisted one is never "connected".
      setBanner("unlisted", `Unlisted backend ${originOf(api.base)}: not one this page is configured for`);
    } else if (status.demo_mode) {
      setBanner("demo", `Demo mode (${status.environment}, version ${status.version})`);
    } else {
      setBanner("prod", `Production backend connected (${status.environment}, version ${status.version})`);
    }
  } catch (err) {
    status = null;
    setBanner("down", `Backend unreachable: ${err.message || err}`);
  }
  const prod = validApi(config.PRODUCTION_API_BASE_URL || "");
  $("connect-prod").hidden = !(status && status.demo_mode && prod && prod !== api.base);
  $("ehr-form").hidden = !(status && status.ehr_enabled);
  $("draft").hidden = !(status && status.note_drafts);
  $("dictate").hidden = !(status && status.live_dictation);
  renderSignedIn();
}

async function refreshHealth() {
  const list = $("health-checks");
  try {
    const live = await fetch(url("/health/live"));
    const ready = await fetch(url("/health/ready"));
    const body = await ready.json();
    $("health-summary").textContent =
      `live: ${live.ok ? "yes" : "no"} · ready: ${body.status === "ready" ? "yes" : "no"}` +
      (body.failing && body.failing.length ? ` (failing: ${body.failing.join(", ")})` : "");
    list.replaceChildren(
      ...Object.entries(body.checks || {}).map(([name, check]) => {
        const item = document.createElement("li");
        item.textContent = `${name}: ${check.ok ? "ok" : "failing"} in ${check.latency_ms.toFixed(1)} ms` +
          (check.detail ? ` — ${check.detail}` : "");
        return item;
      }),
    );
  } catch (err) {
    $("health-summary").textContent = `unreachable: ${err.message || err}`;
    list.replaceChildren();
  }
}

function useApi(base, source) {
  api = { base, source };
  pendingApi = null;
  if (source === "saved") localStorage.setItem(STORAGE_API, base);
  forgetToken();
  renderSignedIn();
  refreshStatus();
  refreshHealth();
}

// ---------------------------------------------------------------------------------------------
// Sign-in.
// ---------------------------------------------------------------------------------------------

function renderSignedIn() {
  const signedIn = Boolean(token);
  $("workspace").hidden = !signedIn;
  $("signout").hidden = !signedIn;
  $("guest-signin").hidden = signedIn || !(status && status.guest_auth);
  $("oidc-signin").hidden = signedIn || !(status && status.oidc_sign_in);
  if (status && status.oidc_sign_in) $("oidc-signin").textContent = `Sign in with ${status.oidc_sign_in.name}`;
  $("login-form").hidden = signedIn || !(status && status.local_login);
  $("who").textContent = signedIn ? "Signed in." : "Not signed in.";
  if (signedIn) refreshList();
  if (signedIn && status && status.ehr_enabled) refreshEhrLink();
  if (!signedIn) $("ehr-link").hidden = true;
}

async function signedIn(response) {
  if (!response.ok) {
    $("who").textContent = `Sign-in failed: ${await problem(response)}`;
    return;
  }
  const body = await response.json();
  saveToken(body.access_token);
  renderSignedIn();
  $("who").textContent = `Signed in as ${body.subject}.`;
}

// ---------------------------------------------------------------------------------------------
// Sign-in through the clinic's identity provider: the authorization-code flow with PKCE
// (RFC 7636) as a public client, so nothing secret lives in the page. The request's verifier
// and state wait in this tab's sessionStorage while the provider's own login page is shown.
// ---------------------------------------------------------------------------------------------

const STORAGE_OIDC = "mmt.oidc";

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(length) {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

async function pkceChallenge(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/// The provider's endpoints, from its discovery document (which must name the same issuer).
async function providerMetadata(issuer) {
  const response = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error(`the identity provider answered ${response.status}`);
  const metadata = await response.json();
  if ((metadata.issuer || "").replace(/\/$/, "") !== issuer) throw new Error("the identity provider names another issuer");
  return metadata;
}

async function startProviderSignIn() {
  const settings = status.oidc_sign_in;
  let metadata;
  try {
    metadata = await providerMetadata(settings.issuer);
  } catch (err) {
    $("who").textContent = `Sign-in failed: ${err.message || err}`;
    return;
  }
  const verifier = randomString(48);
  const state = randomString(16);
  const redirect = location.origin + location.pathname;
  sessionStorage.setItem(STORAGE_OIDC, JSON.stringify({
    verifier, state, redirect, api: api.base, settings,
    token_endpoint: metadata.token_endpoint,
    end_session_endpoint: metadata.end_session_endpoint || null,
  }));
  const query = new URLSearchParams({
    response_type: "code", client_id: settings.client_id, redirect_uri: redirect, scope: settings.scope,
    state, nonce: randomString(16), code_challenge: await pkceChallenge(verifier), code_challenge_method: "S256",
  });
  if (settings.resource) query.set("resource", settings.resource);
  if (settings.scope.split(" ").includes("offline_access")) query.set("prompt", "consent");
  location.assign(`${metadata.authorization_endpoint}?${query}`);
}

/// Keeps what the provider's token endpoint answered, and plans the silent renewal.
function keepProviderTokens(tokens, pending) {
  saveToken(tokens.access_token, {
    provider: {
      name: pending.settings.name,
      client_id: pending.settings.client_id,
      resource: pending.settings.resource || null,
      token_endpoint: pending.token_endpoint,
      end_session_endpoint: pending.end_session_endpoint,
      redirect: pending.redirect,
      refresh_token: tokens.refresh_token || null,
      id_token: tokens.id_token || null,
      expires_at: Date.now() + (tokens.expires_in || 300) * 1000,
    },
  });
  scheduleRenewal();
}

/// The page comes back from the provider with `?code=&state=`: exchange the code (with the
/// verifier only this tab holds) and take the code out of the address bar and history.
async function finishProviderSignIn() {
  if (await finishEhrLink()) {
    refreshEhrLink();
    return;
  }
  const query = new URLSearchParams(location.search);
  const pendingRaw = sessionStorage.getItem(STORAGE_OIDC);
  if (!pendingRaw || !(query.has("code") || query.has("error"))) return;
  sessionStorage.removeItem(STORAGE_OIDC);
  history.replaceState(null, "", location.pathname);
  const pending = JSON.parse(pendingRaw);
  if (query.get("state") !== pending.state || !query.get("code")) {
    $("who").textContent = `Sign-in failed: ${query.get("error_description") || query.get("error") || "the answer did not match the request"}`;
    return;
  }
  const body = new URLSearchParams({
    grant_type: "authorization_code", code: query.get("code"), redirect_uri: pending.redirect,
    client_id: pending.settings.client_id, code_verifier: pending.verifier,
  });
  if (pending.settings.resource) body.set("resource", pending.settings.resource);
  const response = await fetch(pending.token_endpoint, { method: "POST", body });
  if (!response.ok) {
    $("who").textContent = `Sign-in failed: the identity provider answered ${response.status}`;
    return;
  }
  keepProviderTokens(await response.json(), pending);
  renderSignedIn();
  $("who").textContent = `Signed in with ${pending.settings.name} as ${subjectOf(token.value)}.`;
}

function subjectOf(jwt) {
  try {
    return JSON.parse(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub;
  } catch {
    return "you";
  }
}

let renewalTimer = null;

/// A minute before the access token expires, a new one from the refresh token, unseen.
function scheduleRenewal() {
  clearTimeout(renewalTimer);
  const provider = token && token.provider;
  if (!provider || !provider.refresh_token) return;
  const wait = Math.max(5000, provider.expires_at - Date.now() - 60000);
  renewalTimer = setTimeout(renewProviderToken, wait);
}

async function renewProviderToken() {
  const provider = token && token.provider;
  if (!provider) return;
  const body = new URLSearchParams({ grant_type: "refresh_token", refresh_token: provider.refresh_token, client_id: provider.client_id });
  if (provider.resource) body.set("resource", provider.resource);
  const response = await fetch(provider.token_endpoint, { method: "POST", body });
  if (!response.ok) {
    $("who").textContent = "Your session with the identity provider ended: sign in again.";
    forgetToken();
    renderSignedIn();
    return;
  }
  const tokens = await response.json();
  keepProviderTokens(Object.assign({ refresh_token: provider.refresh_token, id_token: provider.id_token }, tokens), {
    settings: { name: provider.name, client_id: provider.client_id, resource: provider.resource },
    token_endpoint: provider.token_endpoint, end_session_endpoint: provider.end_session_endpoint, redirect: provider.redirect,
  });
}

// ---------------------------------------------------------------------------------------------
// Uploading, recording, following a transcription.
// ---------------------------------------------------------------------------------------------

let current = null; // { id, audioUrl }
let recorder = null;

// Above this size a recording goes up in parts through the resumable upload API: behind API
// Gateway a request body is at most 6 MB, and on a poor network a dropped connection then
// costs one part, not the whole file.
const RESUMABLE_ABOVE_BYTES = 4 * 1024 * 1024;
// Rounds of "ask what arrived, send what is missing" before giving up.
const UPLOAD_ROUNDS = 5;
const AUDIO_TYPES = {
  wav: "audio/wav", mp3: "audio/mpeg", flac: "audio/flac", ogg: "audio/ogg", opus: "audio/ogg",
  webm: "audio/webm", m4a: "audio/mp4", mp4: "audio/mp4", aac: "audio/aac",
};

function upload(blob, name) {
  showError("");
  $("result").hidden = true;
  $("upload-progress").value = 0;
  $("transcribe-progress").value = 0;
  $("job-status").textContent = "Uploading…";
  if (blob.size > RESUMABLE_ABOVE_BYTES) {
    uploadInParts(blob, name).catch((err) => {
      $("job-status").textContent = "";
      showError(`The upload stopped: ${err.message}. Choose the same file again to resume.`);
    });
    return;
  }
  const form = new FormData();
  form.append("file", blob, name);
  const request = new XMLHttpRequest();
  request.open("POST", url("/v1/transcriptions"));
  const authorization = authorizationFor(url("/v1/transcriptions"));
  if (authorization) request.setRequestHeader("Authorization", authorization);
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) $("upload-progress").value = Math.round((100 * event.loaded) / event.total);
  };
  request.onerror = () => {
    $("job-status").textContent = "";
    showError("The upload failed: the backend could not be reached.");
  };
  request.onload = () => {
    let body = {};
    try {
      body = JSON.parse(request.responseText);
    } catch {
      /* keep {} */
    }
    if (request.status !== 202) {
      $("job-status").textContent = "";
      showError((body.error && body.error.message) || `The upload failed (${request.status}).`);
      return;
    }
    $("upload-progress").value = 100;
    current = { id: body.id, audioUrl: URL.createObjectURL(blob) };
    follow(body.id);
  };
  request.send(form);
}

/// The resumable upload API: create (or find the one this file started before), send the
/// missing parts, ask what arrived, repeat, complete.
async function uploadInParts(file, name) {
  const memo = `mmt.upload.${name}.${file.size}.${file.lastModified || 0}`;
  const json = { "Content-Type": "application/json" };
  let plan = null;
  const earlier = sessionStorage.getItem(memo);
  if (earlier) {
    const found = await call(`/v1/uploads/${earlier}`);
    if (found.ok) plan = await found.json();
    if (plan && plan.status !== "awaiting_upload") plan = null;
  }
  if (!plan) {
    const extension = (name.split(".").pop() || "").toLowerCase();
    const created = await call("/v1/uploads", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ filename: name, content_type: file.type || AUDIO_TYPES[extension] || "audio/wav", size: file.size }),
    });
    if (created.status !== 201) throw new Error(await problem(created));
    plan = await created.json();
    sessionStorage.setItem(memo, plan.id);
  }
  const showProgress = (bytes, note) => {
    $("upload-progress").value = Math.round((100 * bytes) / file.size);
    $("job-status").textContent = `Uploading in ${plan.part_count} parts: ${Math.round((100 * bytes) / file.size)}%${note || ""}`;
  };
  for (let round = 0; ; round += 1) {
    const asked = await call(`/v1/uploads/${plan.id}`);
    if (!asked.ok) throw new Error(await problem(asked));
    const state = await asked.json();
    let arrived = state.received_bytes;
    showProgress(arrived, round > 0 ? " (resumed)" : "");
    if (state.missing.length === 0) break;
    if (round >= UPLOAD_ROUNDS) throw new Error(`parts ${state.missing.join(", ")} could not be sent`);
    if (round > 0) await new Promise((resolve) => setTimeout(resolve, 1000 * round));
    const targets = await call(`/v1/uploads/${plan.id}/parts`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ parts: state.missing.slice(0, 1000) }),
    });
    if (!targets.ok) throw new Error(await problem(targets));
    for (const part of (await targets.json()).parts) {
      const start = (part.number - 1) * plan.part_size;
      try {
        await sendPart(part, file.slice(start, start + part.length), (loaded) => showProgress(arrived + loaded));
        arrived += part.length;
      } catch (err) {
        showProgress(arrived, ` (part ${part.number} failed: ${err.message}; resuming)`);
      }
    }
  }
  const done = await call(`/v1/uploads/${plan.id}/complete`, { method: "POST" });
  if (done.status !== 202) throw new Error(await problem(done));
  const accepted = await done.json();
  sessionStorage.removeItem(memo);
  $("upload-progress").value = 100;
  current = { id: accepted.id, audioUrl: URL.createObjectURL(file) };
  follow(accepted.id);
}

/// One part, to its URL with its headers only: an S3 presigned URL or this API's own part URL
/// carry their own authorisation, so the bearer token is never sent with a part.
function sendPart(part, bytes, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(part.method, part.url.startsWith("/") ? url(part.url) : part.url);
    for (const [header, value] of Object.entries(part.headers || {})) {
      // The browser sets these itself (and refuses to be told).
      if (!["content-length", "host"].includes(header.toLowerCase())) request.setRequestHeader(header, value);
    }
    request.upload.onprogress = (event) => onProgress(event.loaded);
    request.onload = () =>
      request.status >= 200 && request.status < 300 ? resolve() : reject(new Error(`answered ${request.status}`));
    request.onerror = () => reject(new Error("the connection dropped"));
    request.send(bytes);
  });
}

/// `mask=phi` or `mask=none`, as the "Mask PHI" box says: masking is for the screen and the
/// downloads only; the record and the EHR keep the transcript as spoken.
function maskQuery() {
  return `mask=${$("mask-phi").checked ? "phi" : "none"}`;
}

// Live dictation over /v1/stream (README "Live dictation"): the microphone goes through an
// AudioWorklet to 16 kHz PCM16 frames; committed words show in black, the partial in grey.
let live = null;

function liveUrl() {
  if (status && status.live_dictation_url) return status.live_dictation_url;
  const target = new URL(url("/v1/stream"));
  target.protocol = target.protocol === "https:" ? "wss:" : "ws:";
  return target.toString();
}

async function startDictation() {
  showError("");
  if (!token) return;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
  } catch (err) {
    showError(`The microphone is not available: ${err.message || err}`);
    return;
  }
  const context = new AudioContext();
  await context.audioWorklet.addModule("pcm-worklet.js");
  const node = new AudioWorkletNode(context, "pcm16-downsampler");
  context.createMediaStreamSource(stream).connect(node);
  const socket = new WebSocket(liveUrl());
  socket.binaryType = "arraybuffer";
  live = { socket, context, stream, ready: false, waiting: [], saved: null };
  $("live-committed").textContent = "";
  $("live-partial").textContent = "";
  $("live").hidden = false;
  $("dictate").disabled = true;
  $("record").disabled = true;
  $("stop").disabled = false;
  $("job-status").textContent = "Connecting…";
  // The token travels in the first message, never in the URL.
  socket.onopen = () => socket.send(JSON.stringify({ type: "start", token: token.value }));
  node.port.onmessage = ({ data }) => {
    $("level").value = Math.min(1, data.level * 4);
    if (!live || live.socket !== socket || socket.readyState !== WebSocket.OPEN) return;
    if (live.ready) socket.send(data.pcm.buffer);
    else live.waiting.push(data.pcm.buffer);
  };
  socket.onmessage = (event) => onLiveMessage(socket, JSON.parse(event.data));
  socket.onclose = (event) => endDictation(socket, event);
}

function onLiveMessage(socket, message) {
  if (!live || live.socket !== socket) return;
  switch (message.type) {
    case "ready":
      live.ready = true;
      live.waiting.forEach((buffer) => socket.send(buffer));
      live.waiting = [];
      $("job-status").textContent = "Listening: speak, then press Stop.";
      break;
    case "partial":
      $("live-partial").textContent = message.text;
      break;
    case "final": {
      const committed = $("live-committed");
      const text = message.segments.map((s) => s.text).join(" ");
      committed.textContent = committed.textContent ? `${committed.textContent} ${text}` : text;
      break;
    }
    case "error":
      showError(`Live dictation: ${message.message}`);
      break;
    case "saved":
      live.saved = message.id;
      break;
  }
}

function releaseMicrophone() {
  if (!live) return;
  live.stream.getTracks().forEach((track) => track.stop());
  live.context.close();
  $("level").value = 0;
}

function stopDictation() {
  if (!live) return;
  releaseMicrophone();
  if (live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify({ type: "stop" }));
  $("stop").disabled = true;
  $("job-status").textContent = "Finishing the transcript…";
}

function endDictation(socket, event) {
  if (!live || live.socket !== socket) return;
  releaseMicrophone();
  const saved = live.saved;
  live = null;
  $("dictate").disabled = false;
  $("record").disabled = false;
  $("stop").disabled = true;
  $("live-partial").textContent = "";
  if (event.code !== 1000 && !$("error").textContent) {
    showError(`Live dictation ended (${event.code}${event.reason ? `: ${event.reason}` : ""}).`);
  }
  if (saved) follow(saved);
  else $("job-status").textContent = "";
}

async function follow(id) {
  for (;;) {
    const response = await call(`/v1/transcriptions/${id}?${maskQuery()}`);
    if (!response.ok) {
      showError(await problem(response));
      return;
    }
    const record = await response.json();
    $("transcribe-progress").value = record.progress || 0;
    $("job-status").textContent = `Transcription ${record.status.replace("_", " ")} (${record.progress || 0}%)`;
    if (record.status === "completed") {
      show(record);
      refreshList();
      return;
    }
    if (record.status === "failed") {
      showError(`The transcription failed: ${record.error || "no reason given"}`);
      refreshList();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 700));
  }
}

function stamp(seconds) {
  const m = Math.floor(seconds / 60);
  const s = (seconds % 60).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

function show(record) {
  $("result").hidden = false;
  $("transcript-text").textContent = record.text || "";
  const player = $("player");
  if (current && current.id === record.id && current.audioUrl) player.src = current.audioUrl;
  $("segments").replaceChildren(
    ...(record.segments || []).map((segment) => {
      const item = document.createElement("li");
      const jump = document.createElement("button");
      jump.type = "button";
      jump.textContent = stamp(segment.start);
      jump.setAttribute("aria-label", `Play from ${stamp(segment.start)}`);
      jump.addEventListener("click", () => {
        player.currentTime = segment.start;
        player.play().catch(() => {});
      });
      item.append(jump, document.createTextNode(" " + segment.text.trim()));
      return item;
    }),
  );
  current = Object.assign(current || {}, { id: record.id });
  $("ehr-status").textContent = "";
  showEditor(record);

}

// ---------------------------------------------------------------------------------------------
// Correcting and structuring: every save is a new version on the server; the editor sends the
// version it started from, so a concurrent save is refused rather than overwritten.
// ---------------------------------------------------------------------------------------------

function showEditor(record) {
  const masked = $("mask-phi").checked;
  current.version = record.version;
  current.savedText = record.text || "";
  current.note = record.note || null;
  $("editor").value = current.savedText;
  for (const id of ["editor", "save-edit", "undo-edit", "structure", "draft", "template", "save-sections"]) $(id).disabled = masked;
  $("edit-status").textContent = masked ? "Untick “Mask PHI” to edit: the text shown is masked." : "";
  $("version-info").textContent = record.edited_by
    ? `Version ${record.version}, saved by ${record.edited_by} at ${new Date(record.edited_at).toLocaleString()}.`
    : `Version ${record.version || 1}, as transcribed.`;
  if (record.note) $("template").value = record.note.template;
  renderSections(record.note);
  refreshVersions();
}

function renderSections(note) {
  const sections = (note && note.sections) || [];
  $("save-sections").hidden = sections.length === 0;
  $("sections").replaceChildren(
    ...(sections.length === 0
      ? [Object.assign(document.createElement("p"), { textContent: "No sections yet: dictate headings (“Subjective … Plan …”) or split the text at them." })]
      : sections.map((section) => {
          const box = document.createElement("div");
          box.className = "section";
          const label = document.createElement("label");
          label.htmlFor = `section-${section.key}`;
          label.textContent = `${section.title} `;
          const field = document.createElement("span");
          field.className = "field";
          field.textContent = `(EHR field: ${section.field})`;
          label.append(field);
          const text = document.createElement("textarea");
          text.id = `section-${section.key}`;
          text.dataset.key = section.key;
          text.value = section.text;
          text.disabled = $("mask-phi").checked;
          box.append(label, text);
          return box;
        })),
  );
}

/// The first words that differ between two texts, for "who changed what".
function changeBetween(before, after) {
  const a = (before || "").split(/\s+/).filter(Boolean);
  const b = (after || "").split(/\s+/).filter(Boolean);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const removed = a.slice(start, endA).join(" ");
  const added = b.slice(start, endB).join(" ");
  if (!removed && !added) return "sections changed";
  const cut = (words) => (words.length > 60 ? words.slice(0, 60) + "…" : words);
  return `“${cut(removed)}” → “${cut(added)}”`;
}

async function refreshVersions() {
  const response = await call(`/v1/transcriptions/${current.id}/versions?${maskQuery()}`);
  if (!response.ok) return;
  const { versions } = await response.json();
  current.versions = versions;
  $("versions").replaceChildren(
    ...versions.map((version, index) => {
      const item = document.createElement("li");
      const who = version.author || "the transcription engine";
      item.textContent = `Version ${version.version} by ${who}, ${new Date(version.at).toLocaleString()}`;
      if (index > 0) {
        const change = document.createElement("span");
        change.className = "change";
        change.textContent = ` — ${changeBetween(versions[index - 1].text, version.text)}`;
        item.append(change);
      }
      return item;
    }),
  );
}

/// Saves an edit; on a conflict, reloads the latest version and says so.
async function saveEdit(body, done) {
  const response = await call(`/v1/transcriptions/${current.id}`, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(Object.assign({ version: current.version }, body)),
  });
  if (response.status === 409) {
    const reason = await problem(response);
    await reopen();
    $("edit-status").textContent = `Not saved: ${reason}. The latest version is shown.`;
    return;
  }
  if (!response.ok) {
    $("edit-status").textContent = `Not saved: ${await problem(response)}`;
    return;
  }
  show(await response.json());
  $("edit-status").textContent = done;
}

async function reopen() {
  const response = await call(`/v1/transcriptions/${current.id}?${maskQuery()}`);
  if (response.ok) show(await response.json());
}

function noteInput(note) {
  if (!note) return null;
  return {
    template: note.template,
    sections: note.sections.map((s) => ({ key: s.key, text: s.text })),
    preamble: note.preamble || "",
  };
}

async function undoEdit() {
  if ($("editor").value !== current.savedText) {
    $("editor").value = current.savedText;
    $("edit-status").textContent = "Unsaved changes undone.";
    return;
  }
  const versions = current.versions || [];
  if (versions.length < 2) {
    $("edit-status").textContent = "Nothing to undo: this is the transcript as transcribed.";
    return;
  }
  const previous = versions[versions.length - 2];
  await saveEdit({ text: previous.text, note: noteInput(previous.note) }, `Version ${previous.version} restored as a new version.`);
}

// ---------------------------------------------------------------------------------------------
// The EHR push: find the patient by typing part of a name, pick the encounter, push, and
// follow the delivery until the EHR holds the note.
// ---------------------------------------------------------------------------------------------

// Each clinician pushes with their own EHR login where the deployment says so: the link is
// made once, through the EHR's own sign-in, and the page offers it again when it lapses.
const STORAGE_EHR_LINK = "mmt.ehr-link";

async function refreshEhrLink() {
  const response = await call("/v1/ehr/link");
  if (!response.ok) {
    $("ehr-link").hidden = true;
    return;
  }
  const link = await response.json();
  $("ehr-link").hidden = link.mode !== "per-clinician" || !link.may_push;
  const lapsed = link.state && link.state.state === "needs_login";
  $("ehr-link-status").textContent = !link.linked
    ? "Notes are written with your own EHR login: link your account once."
    : lapsed
      ? `Your EHR link needs renewing: ${link.state.reason}`
      : "Your EHR account is linked: notes are written under your name.";
  $("ehr-link-start").hidden = link.linked && !lapsed;
  $("ehr-link-start").textContent = lapsed ? "Link your EHR account again" : "Link your EHR account";
}

async function startEhrLink() {
  const response = await call("/v1/ehr/link", { method: "POST" });
  if (!response.ok) {
    $("ehr-link-status").textContent = `Could not start linking: ${await problem(response)}`;
    return;
  }
  const { authorization_url } = await response.json();
  sessionStorage.setItem(STORAGE_EHR_LINK, "pending");
  location.assign(authorization_url);
}

/// Back from the EHR's sign-in with `?code=&state=`: MMT checks the state against the link it
/// started and exchanges the code with the verifier it kept.
async function finishEhrLink() {
  const query = new URLSearchParams(location.search);
  if (sessionStorage.getItem(STORAGE_EHR_LINK) !== "pending" || !(query.has("code") || query.has("error"))) return false;
  sessionStorage.removeItem(STORAGE_EHR_LINK);
  history.replaceState(null, "", location.pathname);
  const response = await call("/v1/ehr/link/complete", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ code: query.get("code") || "", state: query.get("state") || "" }),
  });
  $("ehr-link-status").textContent = response.ok ? "Your EHR account is linked." : `Linking failed: ${await problem(response)}`;
  return true;
}

let searchTimer = null;

function searchPatients() {
  clearTimeout(searchTimer);
  const q = $("patient-search").value.trim();
  if (q.length < 2) {
    $("patient-results").replaceChildren();
    $("patient-search").setAttribute("aria-expanded", "false");
    return;
  }
  searchTimer = setTimeout(async () => {
    const response = await call(`/v1/ehr/patients?q=${encodeURIComponent(q)}`);
    if (!response.ok) {
      $("patient-chosen").textContent = `Search failed: ${await problem(response)}`;
      return;
    }
    const { patients } = await response.json();
    if ($("patient-search").value.trim() !== q) return; // typed on meanwhile
    $("patient-search").setAttribute("aria-expanded", String(patients.length > 0));
    $("patient-results").replaceChildren(
      ...(patients.length === 0
        ? [Object.assign(document.createElement("li"), { textContent: "No patient matches." })]
        : patients.map((patient) => {
            const item = document.createElement("li");
            item.setAttribute("role", "option");
            const pick = document.createElement("button");
            pick.type = "button";
            pick.textContent = [patient.name, patient.birth_date, patient.record_number].filter(Boolean).join(" — ");
            pick.addEventListener("click", () => choosePatient(patient));
            item.append(pick);
            return item;
          })),
    );
  }, 250);
}

async function choosePatient(patient) {
  $("patient-id").value = patient.id;
  $("patient-search").value = patient.name;
  $("patient-results").replaceChildren();
  $("patient-search").setAttribute("aria-expanded", "false");
  $("patient-chosen").textContent = `Patient: ${patient.name}${patient.birth_date ? ", born " + patient.birth_date : ""}.`;
  const select = $("encounter-select");
  select.replaceChildren();
  select.disabled = true;
  const response = await call(`/v1/ehr/patients/${encodeURIComponent(patient.id)}/encounters`);
  if (!response.ok) {
    $("patient-chosen").textContent = `Could not list encounters: ${await problem(response)}`;
    return;
  }
  const { encounters } = await response.json();
  select.replaceChildren(
    ...encounters.map((encounter) => {
      const option = document.createElement("option");
      option.value = encounter.id;
      option.textContent = [encounter.date && encounter.date.slice(0, 10), encounter.reason, encounter.number && `#${encounter.number}`]
        .filter(Boolean)
        .join(" — ");
      return option;
    }),
  );
  select.disabled = encounters.length === 0;
  if (encounters.length === 0) $("patient-chosen").textContent += " No encounters: open one in the EHR first.";
}

async function followDelivery(deliveryId) {
  for (let i = 0; i < 90; i++) {
    const response = await call(`/v1/transcriptions/${current.id}/ehr`);
    if (!response.ok) break;
    const { deliveries } = await response.json();
    const delivery = deliveries.find((d) => d.id === deliveryId);
    if (delivery && delivery.status !== "pending") {
      $("ehr-status").textContent =
        delivery.status === "delivered" ? "EHR delivery delivered." : `EHR delivery failed: ${delivery.error || "no reason given"}`;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function download(format) {
  const response = await call(`/v1/transcriptions/${current.id}/transcript?format=${format}&${maskQuery()}`);
  if (!response.ok) {
    showError(await problem(response));
    return;
  }
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${current.id}.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
}

async function refreshList() {
  const response = await call("/v1/transcriptions?limit=20");
  if (!response.ok) return;
  const body = await response.json();
  $("list").replaceChildren(
    ...body.items.map((item) => {
      const entry = document.createElement("li");
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = `${new Date(item.created_at).toLocaleString()} — ${item.status}`;
      open.setAttribute("aria-label", `Open the transcription of ${new Date(item.created_at).toLocaleString()}, ${item.status}`);
      open.addEventListener("click", async () => {
        const record = await call(`/v1/transcriptions/${item.id}?${maskQuery()}`);
        if (record.ok) {
          current = { id: item.id };
          show(await record.json());
        }
      });
      entry.append(open);
      return entry;
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Wiring.
// ---------------------------------------------------------------------------------------------

function wire() {
  $("change-api").addEventListener("click", () => {
    $("api-form").hidden = false;
    $("api-input").value = api.base;
    $("api-input").focus();
  });
  $("api-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const base = validApi($("api-input").value.trim());
    if (!base) {
      $("api-error").textContent = "Enter an http:// or https:// address.";
      return;
    }
    $("api-error").textContent = "";
    $("api-form").hidden = true;
    useApi(base, "saved");
  });
  $("reset-api").addEventListener("click", () => {
    localStorage.removeItem(STORAGE_API);
    const query = new URLSearchParams(location.search);
    if (query.has("api")) {
      query.delete("api");
      history.replaceState(null, "", location.pathname + (query.toString() ? "?" + query : ""));
    }
    const next = chooseApi();
    useApi(next.base, next.source);
  });
  $("connect-prod").addEventListener("click", () => {
    useApi(validApi(config.PRODUCTION_API_BASE_URL), "saved");
  });
  $("guest-signin").addEventListener("click", async () => {
    signedIn(await fetch(url("/auth/guest"), { method: "POST" }));
  });
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    signedIn(
      await fetch(url("/auth/login"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: $("username").value, password: $("password").value }),
      }),
    );
  });
  $("signout").addEventListener("click", async () => {
    // Revoked on the server first, so a copy of the token is worthless too.
    try {
      const response = await call("/auth/logout", { method: "POST" });
      if (!response.ok && response.status !== 401) showError(`Signed out here; the server said: ${await problem(response)}`);
    } catch {
      showError("Signed out here; the server could not be reached to revoke the token.");
    }
    const provider = token && token.provider;
    forgetToken();
    renderSignedIn();
    clearTimeout(renewalTimer);
    // Signed out at the provider too (RP-initiated logout), back to this page afterwards.
    if (provider && provider.end_session_endpoint) {
      const query = new URLSearchParams({ client_id: provider.client_id, post_logout_redirect_uri: provider.redirect });
      if (provider.id_token) query.set("id_token_hint", provider.id_token);
      location.assign(`${provider.end_session_endpoint}?${query}`);
    }
  });
  $("oidc-signin").addEventListener("click", startProviderSignIn);
  $("mask-phi").addEventListener("change", async () => {
    if (!current || !current.id) return;
    const response = await call(`/v1/transcriptions/${current.id}?${maskQuery()}`);
    if (response.ok) show(await response.json());
  });
  $("api-confirm-use").addEventListener("click", () => useApi(pendingApi.base, "query"));
  $("api-confirm-stay").addEventListener("click", () => {
    pendingApi = null;
    const query = new URLSearchParams(location.search);
    query.delete("api");
    history.replaceState(null, "", location.pathname + (query.toString() ? "?" + query : ""));
    renderPendingApi();
  });
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) upload(file, file.name);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) upload(file, file.name);
  });
  $("record").addEventListener("click", async () => {
    showError("");
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.ondataavailable = (event) => chunks.push(event.data);
      recorder.onstop = () => {
        stream.getTracks().forEach((track) => track.stop());
        const type = recorder.mimeType || "audio/webm";
        const extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
        upload(new Blob(chunks, { type }), `recording.${extension}`);
      };
      recorder.start();
      $("record").disabled = true;
      $("stop").disabled = false;
      $("job-status").textContent = "Recording… press Stop when done.";
    } catch (err) {
      showError(`The microphone is not available: ${err.message || err}`);
    }
  });
  $("dictate").addEventListener("click", startDictation);
  $("stop").addEventListener("click", () => {
    if (live) {
      stopDictation();
      return;
    }
    if (recorder && recorder.state === "recording") recorder.stop();
    $("record").disabled = false;
    $("stop").disabled = true;
  });
  $("copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("transcript-text").textContent);
      $("job-status").textContent = "Copied.";
    } catch {
      showError("Copying is not allowed here; select the text instead.");
    }
  });
  for (const format of ["txt", "srt", "vtt"]) {
    $(`download-${format}`).addEventListener("click", () => download(format));
  }
  $("delete").addEventListener("click", async () => {
    const response = await call(`/v1/transcriptions/${current.id}`, { method: "DELETE" });
    if (!response.ok) {
      showError(await problem(response));
      return;
    }
    $("result").hidden = true;
    $("job-status").textContent = "Deleted.";
    current = null;
    refreshList();
  });
  $("ehr-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const patientId = $("patient-id").value;
    const encounterId = $("encounter-select").value;
    if (!patientId || !encounterId) {
      $("ehr-status").textContent = "Pick the patient and the encounter first.";
      return;
    }
    const response = await call(`/v1/transcriptions/${current.id}/ehr`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ patient_id: patientId, encounter_id: encounterId }),
    });
    if (!response.ok) {
      $("ehr-status").textContent = `Not sent: ${await problem(response)}`;
      return;
    }
    const delivery = await response.json();
    $("ehr-status").textContent = `EHR delivery ${delivery.status}.`;
    followDelivery(delivery.id);
  });
  $("patient-search").addEventListener("input", searchPatients);
  $("ehr-link-start").addEventListener("click", startEhrLink);
  $("save-edit").addEventListener("click", () => saveEdit({ text: $("editor").value }, "Saved."));
  $("undo-edit").addEventListener("click", undoEdit);
  const structure = async (method, done) => {
    $("edit-status").textContent = method === "draft" ? "Drafting…" : "";
    const response = await call(`/v1/transcriptions/${current.id}/structure`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ template: $("template").value, method }),
    });
    if (!response.ok) {
      $("edit-status").textContent = `Not split: ${await problem(response)}`;
      return;
    }
    show(await response.json());
    $("edit-status").textContent = done;
  };
  $("structure").addEventListener("click", () => structure("headings", "Split into sections."));
  $("draft").addEventListener("click", () => structure("draft", "Drafted: review each section before pushing."));
  $("save-sections").addEventListener("click", () => {
    const sections = [...document.querySelectorAll("#sections textarea")].map((t) => ({ key: t.dataset.key, text: t.value }));
    const note = { template: current.note.template, sections, preamble: current.note.preamble || "" };
    saveEdit({ note }, "Sections saved.");
  });
}

wire();
renderSignedIn();
finishProviderSignIn();
scheduleRenewal();
refreshStatus();
refreshHealth();
setInterval(refreshHealth, 15000);
