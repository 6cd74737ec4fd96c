// The viewer's WebRTC client: the Reactor local protocol's routes (the ones the SDKs use), one recvonly
// transceiver per output track (video, and audio for AudioOut), one sendonly transceiver per input track
// the model declares (the camera, the microphone: no track on it until the user turns one on, then
// replaceTrack + publish_track, no renegotiation), and the "data" and "control" channels in v0 JSON.
// Loaded before viewer.js, which uses window.ReactorWebRTC and falls back to the WebSocket when it throws.
"use strict";

(() => {
  const ANSWER_TIMEOUT_MS = 5000; // the SDKs poll for about 6 s; a server that is slower is not usable
  const CONNECT_TIMEOUT_MS = 5000; // from the answer to ICE + DTLS connected and both channels open
  const GATHER_WAIT_MS = 1000; // candidates found later are trickled through ice_candidates
  const PING_INTERVAL_MS = 5000;
  const DISCONNECTED_GRACE_MS = 4000; // a connection "disconnected" this long is given up // the server drops a peer that stays silent (js-sdk pings every 5 s)
  const START_ATTEMPTS = 600;
  const TERMINAL_STATES = /^(inactive|closed|ended|stopped|stopping|error)$/i;
  const PUBLISH_TIMEOUT_MS = 3000; // the server answers publish_track at once; a silent one is an old server

  // A reason WebRTC cannot be used here; `code` says which (the viewer shows the message, tests read the code).
  class WebRtcUnavailable extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function call(url, path, method, body) {
    const options = { method, headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url(path), options);
    let json = null;
    try { json = await response.json(); } catch (e) { json = null; }
    return { status: response.status, body: json, headers: response.headers };
  }

  const errorText = (result) =>
    (result.body && result.body.error && (result.body.error.message || result.body.error.code)) || "HTTP " + result.status;

  // POST /start_session, or adopt the running session (GET /session) when one is already running.
  async function startSession(url, onWait) {
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      let result;
      try {
        result = await call(url, "start_session", "POST", {});
      } catch (e) {
        onWait("server unreachable; retrying…");
        await sleep(1000);
        continue;
      }
      if (result.status === 404 || result.status === 405) {
        throw new WebRtcUnavailable("no_routes", "the server does not serve the WebRTC routes (POST /start_session: HTTP " + result.status + ")");
      }
      if (result.status === 409) {
        const running = await call(url, "session", "GET");
        if (running.status === 200 && running.body && running.body.session_id) return { descriptor: running.body, adopted: true };
        continue; // it ended in between: start one
      }
      const code = result.body && result.body.error && result.body.error.code;
      if (result.status === 503 && code === "load_failed") {
        // For good: say what failed instead of waiting for a model that will never load.
        const kind = result.body.error.error || "an error";
        throw new WebRtcUnavailable("load_failed", "the model failed to load (" + kind + "); see the server log");
      }
      if (result.status === 503) {
        onWait("loading the model…");
        const retryAfter = Number(result.headers.get("Retry-After"));
        await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(5000, retryAfter * 1000) : 1000);
        continue;
      }
      if (result.status === 200 || result.status === 201) return { descriptor: result.body, adopted: false };
      throw new WebRtcUnavailable("start_failed", "cannot start a session: " + errorText(result));
    }
    throw new WebRtcUnavailable("start_failed", "the model did not finish loading");
  }

  // The descriptor's state of the running session, or null when it is gone.
  async function sessionAlive(url, sessionId) {
    try {
      const result = await call(url, "session", "GET");
      const body = result.body;
      return result.status === 200 && body && body.session_id === sessionId && !TERMINAL_STATES.test(String(body.state || ""));
    } catch (e) {
      return false;
    }
  }

  function iceServersOf(body) {
    // Reactor's {uris, credentials: {username, password}} to the browser's {urls, username, credential}.
    return ((body && body.ice_servers) || []).map((server) => {
      const out = { urls: server.uris || server.urls };
      const credentials = server.credentials || {};
      if (credentials.username !== undefined) out.username = credentials.username;
      if (credentials.password !== undefined) out.credential = credentials.password;
      return out;
    });
  }

  function preferVp8(transceiver) {
    // VP8 first: the server sends pre-encoded VP8 and decodes VP8 only. The others stay listed so the
    // offer is still ordinary.
    if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
    const codecs = (RTCRtpReceiver.getCapabilities("video") || { codecs: [] }).codecs;
    const rank = (c) => (/vp8$/i.test(c.mimeType) ? 0 : 1);
    if (codecs.length) transceiver.setCodecPreferences([...codecs].sort((a, b) => rank(a) - rank(b)));
  }

  function gathered(pc, timeoutMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
      function check() { if (pc.iceGatheringState === "complete") done(); }
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  function opened(pc, channels, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new WebRtcUnavailable("timeout", "ICE/DTLS did not connect within " + timeoutMs / 1000 + " s (ICE " + pc.iceConnectionState + ")")), timeoutMs);
      function finish(error) {
        clearTimeout(timer);
        pc.removeEventListener("connectionstatechange", check);
        pc.removeEventListener("iceconnectionstatechange", check);
        for (const channel of channels) channel.removeEventListener("open", check);
        if (error) reject(error);
        else resolve();
      }
      function check() {
        if (pc.connectionState === "failed" || pc.iceConnectionState === "failed") {
          finish(new WebRtcUnavailable("ice_failed", "ICE failed: no candidate pair connected"));
        } else if (pc.connectionState === "connected" && channels.every((c) => c.readyState === "open")) {
          finish(null);
        }
      }
      pc.addEventListener("connectionstatechange", check);
      pc.addEventListener("iceconnectionstatechange", check);
      for (const channel of channels) channel.addEventListener("open", check);
      check();
    });
  }

  async function pollAnswer(url, path, deadline) {
    let wait = 50;
    while (performance.now() < deadline) {
      const result = await call(url, path, "GET");
      if (result.status === 200 && result.body && result.body.sdp_answer) return result.body.sdp_answer;
      if (result.status !== 202) throw new WebRtcUnavailable("no_answer", "GET sdp_params: " + errorText(result));
      await sleep(Math.min(wait, Math.max(0, deadline - performance.now())));
      wait = Math.min(400, wait * 2);
    }
    throw new WebRtcUnavailable("no_answer", "the server sent no SDP answer within " + ANSWER_TIMEOUT_MS / 1000 + " s");
  }

  function parse(text) {
    if (typeof text !== "string") return null; // v1 protobuf would be binary; this client speaks v0
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  // Open a peer connection to the session of `descriptor`. Resolves once media can flow; rejects with a
  // WebRtcUnavailable (and leaves nothing open) otherwise. `on` = {track(name, track), message(msg,
  // channel), closed(reason)}; callbacks run on the page's event loop.
  async function connect(url, descriptor, on) {
    if (typeof window.RTCPeerConnection !== "function") {
      throw new WebRtcUnavailable("unsupported", "this browser has no RTCPeerConnection");
    }
    const capabilities = descriptor.capabilities || {};
    const declared = (capabilities.tracks || []).filter((t) => t && (t.kind === "video" || t.kind === "audio"));
    const tracks = declared.filter((t) => t.kind === "video" && t.direction === "recvonly");
    if (!tracks.length) throw new WebRtcUnavailable("no_tracks", "the session descriptor lists no video track");
    // The model's audio (recvonly) and its inputs (sendonly: the client sends), in the declared order.
    const others = declared.filter((t) => !(t.kind === "video" && t.direction === "recvonly"));
    const prefix = "sessions/" + encodeURIComponent(descriptor.session_id) + "/transport/webrtc/";
    const servers = await call(url, prefix + "ice_servers", "GET");
    if (servers.status !== 200) throw new WebRtcUnavailable("no_routes", "GET ice_servers: " + errorText(servers));

    const pc = new RTCPeerConnection({ iceServers: iceServersOf(servers.body), bundlePolicy: "max-bundle" });
    let live = false;
    let closedReason = null;
    let pingTimer = null;
    const close = (reason) => {
      if (closedReason !== null) return;
      closedReason = reason;
      clearInterval(pingTimer);
      pc.close();
      if (live) on.closed(reason);
    };
    try {
      const receivers = tracks.map((track) => {
        const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
        preferVp8(transceiver);
        return { track, transceiver };
      });
      const bound = [...receivers];
      const inputs = {}; // name -> {kind, transceiver}: where a camera or microphone track goes
      for (const track of others) {
        const direction = track.direction === "sendonly" ? "sendonly" : "recvonly";
        const transceiver = pc.addTransceiver(track.kind, { direction });
        if (track.kind === "video") preferVp8(transceiver);
        if (direction === "sendonly") inputs[track.name] = { kind: track.kind, transceiver };
        bound.push({ track, transceiver });
      }
      pc.ontrack = (event) => {
        const entry = bound.find((r) => r.transceiver === event.transceiver || r.transceiver.mid === event.transceiver.mid);
        if (entry && entry.track.direction === "sendonly") return; // our own input's m-line
        const fallback = event.track.kind === "audio" ? null : tracks[0].name;
        const name = entry ? entry.track.name : fallback;
        if (name) on.track(name, event.track);
      };
      const data = pc.createDataChannel("data");
      const control = pc.createDataChannel("control");
      const pending = new Map(); // publish_track request_id -> resolve
      let requestSeq = 0;
      data.onmessage = (event) => { const m = parse(event.data); if (m) on.message(m, "data"); };
      control.onmessage = (event) => {
        const m = parse(event.data);
        if (m && m.type === "response" && pending.has(m.request_id)) {
          pending.get(m.request_id)(m);
          pending.delete(m.request_id);
        } else if (m) {
          on.message(m, "control");
        }
      };

      const created = await call(url, prefix + "connections", "POST", {});
      if (created.status !== 201 && created.status !== 200) throw new WebRtcUnavailable("no_routes", "POST connections: " + errorText(created));
      const cid = created.body.connection_id;
      const path = prefix + "connections/" + encodeURIComponent(cid) + "/";

      // Candidates found before the offer goes out ride in its SDP; later ones are trickled.
      let offerSent = false;
      pc.onicecandidate = (event) => {
        if (!offerSent || closedReason !== null) return;
        const c = event.candidate;
        const body = c && c.candidate
          ? { candidates: [{ candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex }], is_final: false }
          : { candidates: [], is_final: true };
        call(url, path + "ice_candidates", "POST", body).catch(() => {});
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, GATHER_WAIT_MS);
      const offer = pc.localDescription.sdp;
      offerSent = true;
      const trackMapping = bound.map(({ track, transceiver }) => ({
        mid: transceiver.mid, name: track.name, kind: track.kind, direction: track.direction === "sendonly" ? "sendonly" : "recvonly",
      }));
      const deadline = performance.now() + ANSWER_TIMEOUT_MS;
      const posted = await call(url, path + "sdp_params", "POST", {
        sdp_offer: offer,
        track_mapping: trackMapping,
        client_info: { sdk_type: "reactor-engine-viewer", sdk_version: "1" },
      });
      if (posted.status !== 202 && posted.status !== 200) throw new WebRtcUnavailable("refused", "POST sdp_params: " + errorText(posted));
      const answer = posted.body && posted.body.sdp_answer ? posted.body.sdp_answer : await pollAnswer(url, path + "sdp_params", deadline);
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      await opened(pc, [data, control], CONNECT_TIMEOUT_MS);

      // Runtime 3.x semantics: a peer with a control channel starts paused until it resumes each track.
      for (const { track } of bound) {
        if (track.direction === "sendonly") continue;
        control.send(JSON.stringify({ type: "notification", event: "resume_track", data: { name: track.name } }));
      }
      const controlSend = (message) => {
        if (control.readyState !== "open") return false;
        control.send(JSON.stringify(message));
        return true;
      };
      // An input track: ask the server to take it (publish_track), then put `media` on its transceiver.
      // Resolves {ok: true} or {ok: false, code, message}; the track is not sent when refused.
      async function publish(name, media) {
        const input = inputs[name];
        if (!input) return { ok: false, code: "not_declared", message: "the session declares no input " + JSON.stringify(name) };
        const id = "publish-" + ++requestSeq;
        const answer = new Promise((resolve) => {
          pending.set(id, resolve);
          setTimeout(() => { if (pending.delete(id)) resolve(null); }, PUBLISH_TIMEOUT_MS);
        });
        if (!controlSend({ type: "request", method: "publish_track", request_id: id, data: { name } })) {
          pending.delete(id);
          return { ok: false, code: "not_connected", message: "the control channel is closed" };
        }
        const response = await answer;
        if (response && response.error) {
          return { ok: false, code: response.error.code || "publish_refused", message: response.error.message || "refused" };
        }
        await input.transceiver.sender.replaceTrack(media);
        return { ok: true, answered: Boolean(response) };
      }
      async function unpublish(name) {
        const input = inputs[name];
        if (!input) return;
        await input.transceiver.sender.replaceTrack(null);
        controlSend({ type: "notification", event: "unpublish_track", data: { name } });
      }
      const send = (message) => {
        if (data.readyState !== "open") return false;
        data.send(JSON.stringify(message));
        return true;
      };
      pingTimer = setInterval(() => send({ scope: "runtime", data: { type: "ping", data: {} } }), PING_INTERVAL_MS);
      let lostTimer = null;
      pc.addEventListener("connectionstatechange", () => {
        clearTimeout(lostTimer);
        if (pc.connectionState === "failed" || pc.connectionState === "closed") close("connection " + pc.connectionState);
        // "disconnected" may heal; one that lasts is a lost path (ICE takes far longer to say "failed").
        if (pc.connectionState === "disconnected") lostTimer = setTimeout(() => close("connection lost"), DISCONNECTED_GRACE_MS);
      });
      data.addEventListener("close", () => close("data channel closed"));
      live = true;
      return {
        connectionId: cid,
        pc,
        trackNames: tracks.map((t) => t.name),
        inputNames: Object.keys(inputs),
        mids: Object.fromEntries(trackMapping.map((m) => [m.name, m.mid])),
        publish,
        unpublish,
        // A v0 command: the application-scope envelope, fire-and-forget (no request id exists in v0).
        command: (type, payload) => send({ scope: "application", data: { type, data: payload } }),
        send,
        close: () => close("closed by the viewer"),
      };
    } catch (e) {
      close(e.message || String(e));
      if (e instanceof WebRtcUnavailable) throw e;
      throw new WebRtcUnavailable("error", "WebRTC setup failed: " + (e.message || e));
    }
  }

  // The receive-side numbers of the connection's track `mid` (codec, frames, fps, bitrate, RTT, delays).
  async function readStats(pc, mid, previous) {
    const report = await pc.getStats();
    const byId = new Map();
    let inbound = null;
    let transport = null;
    report.forEach((s) => {
      byId.set(s.id, s);
      if (s.type === "inbound-rtp" && s.kind === "video" && (!inbound || s.mid === mid)) inbound = s;
      if (s.type === "transport" && s.selectedCandidatePairId) transport = s;
    });
    let pair = transport ? byId.get(transport.selectedCandidatePairId) : null;
    if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
    const out = { timestamp: performance.now(), bytesReceived: 0, framesDecoded: 0 };
    if (pair && typeof pair.currentRoundTripTime === "number") out.rttMs = pair.currentRoundTripTime * 1000;
    if (!inbound) return out;
    const codec = inbound.codecId ? byId.get(inbound.codecId) : null;
    if (codec && codec.mimeType) {
      out.codecMimeType = codec.mimeType;
      out.codec = codec.mimeType.split("/").pop();
    }
    out.bytesReceived = inbound.bytesReceived || 0;
    out.framesDecoded = inbound.framesDecoded || 0;
    out.framesDropped = inbound.framesDropped || 0;
    out.packetsLost = inbound.packetsLost || 0;
    out.width = inbound.frameWidth || 0;
    out.height = inbound.frameHeight || 0;
    out.keyFramesDecoded = inbound.keyFramesDecoded || 0;
    if (inbound.jitterBufferEmittedCount) out.jitterBufferMs = (1000 * inbound.jitterBufferDelay) / inbound.jitterBufferEmittedCount;
    if (inbound.framesDecoded) out.decodeMs = (1000 * inbound.totalDecodeTime) / inbound.framesDecoded;
    if (previous && out.timestamp > previous.timestamp) {
      const seconds = (out.timestamp - previous.timestamp) / 1000;
      out.bitrateKbps = (8 * Math.max(0, out.bytesReceived - previous.bytesReceived)) / 1000 / seconds;
      out.fps = Math.max(0, out.framesDecoded - previous.framesDecoded) / seconds;
    }
    if (typeof inbound.framesPerSecond === "number") out.fps = inbound.framesPerSecond;
    return out;
  }

  window.ReactorWebRTC = { startSession, sessionAlive, connect, readStats, WebRtcUnavailable };
})();
