// The reactor-engine viewer: starts (or joins) a session and plays it over WebRTC (webrtc.js, the
// Reactor local protocol) or, when WebRTC cannot connect, over the WebSocket (frames.js draws its
// frames on a canvas); builds a control for every command of GET /schema (controls.js); shows codec,
// fps, bitrate, RTT and latency. Protocol: docs/protocol.md. `?transport=websocket|webrtc` forces one.
// It tells the truth about the model: a load failure or a session's end with its kind and when
// (outcome.js), and only the command values the engine reports as current (controls.js). A model with
// input tracks gets camera / microphone toggles (media.js); one with AudioOut tracks is heard (sound.js).
"use strict";

(() => {
  const COMMAND_TIMEOUT_MS = 15000;
  const REPLY_GRACE_MS = 1000; // v0 data-channel commands have no reply; wait this long for one anyway
  const LOG_LIMIT = 100;
  const RTC = window.ReactorWebRTC; // absent when webrtc.js did not load: the WebSocket is used
  const OUTCOME = window.ReactorOutcome;

  // Relative to the page, so the viewer also works where a host mounts the app under a prefix.
  const basePath = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const base = new URL(basePath, location.origin);
  const url = (path) => new URL(path, base);
  const wsUrl = (path) => {
    const u = url(path);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return u;
  };
  const forced = new URLSearchParams(location.search).get("transport"); // "webrtc" | "websocket" | null

  const $ = (id) => document.getElementById(id);
  const canvas = $("screen");
  const video = $("video");
  const context2d = canvas.getContext("2d", { willReadFrequently: true });

  // Everything the page knows, also read by the browser tests (window.reactorViewer.state).
  const state = {
    model: null,
    serverCodecs: null,
    sessionId: null,
    status: "starting",
    transport: null, // "webrtc" | "websocket" once live
    fallback: null, // {code, message}: why WebRTC was not used
    connectionId: null,
    framesReceived: 0,
    framesDrawn: 0,
    framesDecoded: 0,
    lastIndex: -1,
    lastDrawnIndex: -1,
    missed: 0,
    width: 0,
    height: 0,
    codec: null, // "VP8" over WebRTC (from getStats), the frame codec ("jpeg") over the WebSocket
    bitrateKbps: null,
    serverLatencyMs: null,
    rttMs: null,
    jitterBufferMs: null,
    decodeMs: null,
    latencyMs: null,
    fps: 0,
    errors: [],
    replies: 0,
    messages: [],
    commandState: null, // {COMMAND: {PARAMETER: value}}: the current values the engine reported
    loadError: null, // "the model failed to load (KIND); ..." when it did
    end: null, // how the last session ended: {reason, error, error_id, duration_s}
  };
  let ws = null;
  let rtc = null; // the WebRTC connection (webrtc.js) while one is live
  let rtcStats = null;
  const sound = window.ReactorSound.create(state, { button: $("sound-toggle"), audio: $("sound") }, log);
  const media = window.ReactorMedia.create(state, { toggles: $("media-toggles"), status: $("media-status"), preview: $("preview") }, log);
  const frames = window.ReactorFrames.player(canvas, context2d, state, log, sound.pushPcm); // WebSocket frames
  const screen = window.ReactorScreen.create(state, frames, canvas, video, context2d); // stats, fit, pixels
  let requestSeq = 0;
  // request_id -> {resolve, timer, command (over WebRTC: the reply is the model message of that type),
  // late (the command was reported sent; this waits for a result that may still come)}
  const waiting = new Map();
  let pingTimer = null;
  let statsTimer = null;
  let stopping = false;
  let sessionEnd = null; // how the session ended, as the server said (event, refusal, sessionEnded)
  let controls = null; // ReactorControls.build's {sync}

  // -- status and log ---------------------------------------------------------------------------

  function setStatus(text, kind) {
    state.status = text;
    const el = $("status");
    el.textContent = text;
    el.className = "status" + (kind ? " " + kind : "");
  }

  function log(text, isError) {
    const item = document.createElement("li");
    item.textContent = new Date().toLocaleTimeString() + "  " + text;
    if (isError) item.className = "error";
    const list = $("log");
    list.prepend(item);
    while (list.children.length > LOG_LIMIT) list.lastChild.remove();
  }

  function setTransport(transport) {
    if (transport !== state.transport) Object.assign(state, { lastIndex: -1, missed: 0, fps: 0, bitrateKbps: null, codec: null });
    state.transport = transport;
    document.documentElement.dataset.transport = transport || "";
    video.hidden = transport !== "webrtc";
    canvas.hidden = transport === "webrtc";
  }

  function fallBack(code, message) {
    state.fallback = { code, message };
    document.documentElement.dataset.fallback = code;
    const notice = $("notice");
    notice.textContent = "WebRTC unavailable (" + message + "): playing over the WebSocket instead.";
    notice.hidden = code === "disabled";
    log("WebRTC unavailable: " + message, code !== "disabled");
  }

  async function fetchJSON(path, options) {
    const response = await fetch(url(path), options);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { status: response.status, body };
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function settleAll(error) {
    for (const [, entry] of waiting) {
      clearTimeout(entry.timer);
      if (!entry.late) entry.resolve({ ok: false, error }); // a sent command's result line stays "sent"
    }
    waiting.clear();
  }

  function ended(text, kind) {
    clearInterval(pingTimer);
    clearInterval(statsTimer);
    settleAll({ code: "disconnected", message: "connection closed" });
    detachMedia();
    setStatus(text, kind);
    state.sessionId = null;
    rtc = null;
    ws = null;
    $("stop").hidden = true;
    $("start").hidden = false;
  }

  // The session is over: say how it ended, from the server's stats of it (they name the error's kind
  // and id), else from what the transport said; then show the idle model's values.
  async function closedWith(sessionId, fallback, bad) {
    const end = (await OUTCOME.endFromServer(fetchJSON, sessionId)) || sessionEnd;
    state.end = end;
    const failed = Boolean(end && (end.error || end.reason === "error"));
    if (end) log(OUTCOME.describeEnd(end), failed);
    ended(end ? OUTCOME.describeEnd(end) : fallback, failed || (!end && bad) ? "bad" : "");
    fetchJSON("schema").then(
      (schema) => { if (schema.status === 200) syncControls(schema.body.command_state); },
      () => {}, // keep what is shown
    );
  }

  const detachMedia = () => { media.detach(); sound.stop(); }; // the devices stay on for the next connection

  function syncControls(values) {
    state.commandState = values || null;
    if (controls) controls.sync(state.commandState);
  }

  // The model failed to load: no session will start until the server is restarted.
  function loadFailed(text) {
    state.loadError = text;
    log(text, true);
    ended(text, "bad");
    $("start").hidden = true;
  }

  // -- session ----------------------------------------------------------------------------------

  function whyNotWebRtc() {
    if (forced === "websocket") return ["disabled", "?transport=websocket"];
    if (!RTC) return ["unavailable", "webrtc.js did not load"];
    if (typeof window.RTCPeerConnection !== "function") return ["unsupported", "this browser has no RTCPeerConnection"];
    if (state.serverCodecs && !state.serverCodecs.includes("vp8")) {
      return ["no_vp8", "the server encodes " + state.serverCodecs.join(", ") + ", not VP8"];
    }
    return null;
  }

  async function start() {
    $("start").hidden = true;
    stopping = false;
    sessionEnd = null;
    state.end = null;
    state.fallback = null;
    $("notice").hidden = true;
    const why = forced === "webrtc" ? null : whyNotWebRtc();
    if (why) {
      fallBack(...why);
      return startWebSocket();
    }
    try {
      return await startWebRtc();
    } catch (e) {
      if (e.code === "load_failed") return loadFailed(e.message);
      if (forced === "webrtc") {
        log("WebRTC failed: " + e.message, true);
        ended("WebRTC failed: " + e.message, "bad");
        return;
      }
      fallBack(e.code || "error", e.message || String(e));
      return startWebSocket();
    }
  }

  async function stop() {
    if (!state.sessionId) return;
    stopping = true;
    $("stop").disabled = true;
    if (state.transport === "webrtc") await fetchJSON("stop_session", { method: "POST" });
    else await fetchJSON("sessions/" + encodeURIComponent(state.sessionId), { method: "DELETE" });
  }

  // -- WebRTC -----------------------------------------------------------------------------------

  async function startWebRtc() {
    setStatus("starting a session…");
    const { descriptor, adopted } = await RTC.startSession(url, (text) => setStatus(text));
    if (adopted) log("a session is already running; joining it");
    state.sessionId = descriptor.session_id;
    setStatus("connecting over WebRTC…");
    rtc = await RTC.connect(url, descriptor, { track: showTrack, message: onRtcMessage, closed: onRtcClosed });
    state.connectionId = rtc.connectionId;
    media.attachRtc(rtc);
    setTransport("webrtc");
    setStatus("live · session " + String(descriptor.session_id).slice(0, 8) + " · WebRTC", "live");
    $("stop").hidden = false;
    $("stop").disabled = false;
    log("connected over WebRTC to session " + descriptor.session_id + " (connection " + rtc.connectionId + ")");
    rtcStats = null;
    statsTimer = setInterval(pollWebRtcStats, 1000);
  }

  function showTrack(name, track) {
    if (track.kind === "audio") sound.playTrack(name, track);
    else screen.play(track); // the first output video track is shown
  }

  function onRtcMessage(message, channel) {
    const inner = message.scope && message.data && typeof message.data === "object" ? message.data : null;
    if (inner && inner.type === "sessionEnded") {
      sessionEnd = OUTCOME.endOf({ reason: (inner.data && inner.data.reason) || "ended" });
      stopping = true;
      return;
    }
    if (inner && message.scope === "application") {
      // v0 has no replies, but the server sends a command's non-empty result as a model message
      // typed with the command's name: show it next to the control that sent it.
      for (const [id, pending] of waiting) {
        if (pending.command !== inner.type) continue;
        clearTimeout(pending.timer);
        waiting.delete(id);
        state.replies++;
        pending.resolve({ ok: true, result: inner.data });
        break;
      }
      state.messages.push(inner);
      log("model: " + inner.type + " " + JSON.stringify(inner.data));
      return;
    }
    if (inner && inner.type === "pong") return;
    log(channel + ": " + JSON.stringify(message).slice(0, 200), message.type === "error" || (inner && inner.type === "error"));
  }

  async function onRtcClosed(reason) {
    const sessionId = state.sessionId;
    video.srcObject = null;
    detachMedia();
    clearInterval(statsTimer);
    if (!stopping && sessionId && (await RTC.sessionAlive(url, sessionId))) {
      // The peer connection failed under a running session: keep watching it over the WebSocket.
      rtc = null;
      fallBack("lost", reason.startsWith("connection") ? reason : "connection lost: " + reason);
      return startWebSocket();
    }
    setTransport(null);
    await closedWith(sessionId, "session closed (" + reason + ")", !stopping);
  }

  async function pollWebRtcStats() {
    const conn = rtc;
    if (!conn) return;
    const trackName = conn.trackNames[0];
    try {
      rtcStats = await RTC.readStats(conn.pc, conn.mids[trackName], rtcStats);
    } catch (e) {
      return;
    }
    sound.readStats(conn.pc).catch(() => {});
    const s = rtcStats;
    if (s.codec) state.codec = s.codec;
    document.documentElement.dataset.codec = state.codec || "";
    state.framesDecoded = s.framesDecoded;
    state.framesReceived = s.framesDecoded;
    state.lastIndex = s.framesDecoded;
    state.missed = (s.framesDropped || 0) + (s.packetsLost || 0);
    if (!state.width && s.width) { state.width = s.width; state.height = s.height; }
    if (typeof s.fps === "number") state.fps = s.fps;
    if (typeof s.bitrateKbps === "number") state.bitrateKbps = s.bitrateKbps;
    state.rttMs = typeof s.rttMs === "number" ? s.rttMs : state.rttMs;
    state.jitterBufferMs = s.jitterBufferMs ?? null;
    state.decodeMs = s.decodeMs ?? null;
    // The server's part comes from its stats: commit → encoded packet of the shown track.
    try {
      const result = await fetchJSON("sessions/" + encodeURIComponent(state.sessionId) + "/stats");
      if (result.body && result.body.command_state && rtc === conn) syncControls(result.body.command_state);
      const tracks = (result.body && result.body.tracks) || {};
      const track = tracks[trackName] || Object.values(tracks)[0];
      if (track && track.commit_to_packet && track.commit_to_packet.count) state.serverLatencyMs = track.commit_to_packet.p50_ms;
    } catch (e) { /* keep the last figure */ }
    state.latencyMs =
      state.serverLatencyMs === null
        ? null
        : state.serverLatencyMs + (state.rttMs || 0) / 2 + (state.jitterBufferMs || 0) + (state.decodeMs || 0);
  }

  // -- WebSocket --------------------------------------------------------------------------------

  async function startWebSocket() {
    setStatus("starting a session…");
    for (let attempt = 0; attempt < 600; attempt++) {
      let result;
      try {
        result = await fetchJSON("sessions", { method: "POST" });
      } catch (e) {
        setStatus("server unreachable; retrying…", "bad");
        await sleep(1000);
        continue;
      }
      const error = result.body && result.body.error;
      if (result.status === 201) return connectWebSocket(result.body.session_id);
      if (result.status === 409 && error && error.session_id) {
        if (error.session_id !== state.sessionId) log("a session is already running; joining it");
        return connectWebSocket(error.session_id);
      }
      if (result.status === 503 && error && error.code === "load_failed") {
        return loadFailed(OUTCOME.loadFailure({ state: "error", error: error.error }));
      }
      if (result.status === 503 && error && (error.code === "loading" || error.code === "not_ready")) {
        setStatus("loading the model…");
        await sleep(1000);
        continue;
      }
      ended("cannot start a session: " + (error ? error.message : "HTTP " + result.status), "bad");
      return;
    }
  }

  function connectWebSocket(sessionId) {
    state.sessionId = sessionId;
    setTransport("websocket");
    setStatus("connecting…");
    ws = new WebSocket(wsUrl("sessions/" + encodeURIComponent(sessionId) + "/ws"));
    ws.binaryType = "arraybuffer";
    const socket = ws;
    ws.onopen = () => media.attachWebSocket(socket); // the camera and microphone, if on, go out as frames
    ws.onmessage = (event) => {
      if (typeof event.data === "string") onText(event.data);
      else frames.push(event.data);
    };
    ws.onclose = (event) => {
      const why = event.reason || "code " + event.code;
      closedWith(sessionId, "session closed (" + why + ")", event.code !== 1000);
    };
    ws.onerror = () => log("WebSocket error", true);
    pingTimer = setInterval(ping, 1000);
  }

  function send(message) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  // One command (or other request) over whichever transport is live; resolves with the reply.
  function request(message) {
    const id = "v" + (++requestSeq);
    const overRtc = state.transport === "webrtc" && rtc;
    return new Promise((resolve) => {
      const sent = overRtc ? rtc.command(message.type, message.data) : send({ ...message, request_id: id });
      if (!sent) {
        resolve({ ok: false, error: { code: "not_connected", message: "no session is connected" } });
        return;
      }
      const timer = overRtc
        ? setTimeout(() => {
            // No reply yet: say it was sent, and keep listening for a late result a while longer.
            const later = new Promise((settle) => {
              const expire = setTimeout(() => waiting.delete(id), COMMAND_TIMEOUT_MS);
              waiting.set(id, { resolve: settle, timer: expire, command: message.type, late: true });
            });
            resolve({ ok: true, sent: true, later });
          }, REPLY_GRACE_MS)
        : setTimeout(() => {
            waiting.delete(id);
            resolve({ ok: false, error: { code: "timeout", message: "no reply within " + COMMAND_TIMEOUT_MS / 1000 + " s" } });
          }, COMMAND_TIMEOUT_MS);
      waiting.set(id, { resolve, timer, command: overRtc ? message.type : null });
    });
  }

  function ping() {
    send({ type: "ping", request_id: "ping", t: performance.now() });
  }

  function onText(text) {
    let message;
    try { message = JSON.parse(text); } catch (e) { log("unreadable message from the server", true); return; }
    switch (message.type) {
      case "hello":
        if (Array.isArray(message.tracks)) media.useIndices(message.tracks); // the header's track numbers
        state.codec = message.codec;
        document.documentElement.dataset.codec = message.codec || "";
        setStatus("live · session " + message.session_id.slice(0, 8) + " · WebSocket", "live");
        $("stop").hidden = false;
        $("stop").disabled = false;
        log("connected over the WebSocket to session " + message.session_id);
        break;
      case "pong":
        if (typeof message.t === "number") state.rttMs = performance.now() - message.t;
        break;
      case "reply": {
        state.replies++;
        const entry = waiting.get(message.request_id);
        if (entry) {
          clearTimeout(entry.timer);
          waiting.delete(message.request_id);
          entry.resolve(message);
        }
        break;
      }
      case "event":
        if (message.event === "ended") {
          sessionEnd = state.end = OUTCOME.endOf(message);
          setStatus(OUTCOME.describeEnd(sessionEnd), message.reason === "error" ? "bad" : "");
        } else {
          log("session " + message.event + (message.reason ? ": " + message.reason : ""), message.event === "unhealthy");
        }
        break;
      case "state":
        syncControls(message.data);
        break;
      case "message":
        state.messages.push(message.data);
        log("model: " + JSON.stringify(message.data));
        break;
      case "error":
        if (message.code === "session_ended" && message.session) sessionEnd = OUTCOME.endOf(message.session);
        state.errors.push(message);
        log("error " + message.code + ": " + message.message, true);
        break;
      default:
        log("message: " + text.slice(0, 200));
    }
  }

  // -- start ------------------------------------------------------------------------------------

  async function main() {
    $("start").addEventListener("click", start);
    $("stop").addEventListener("click", stop);
    window.addEventListener("pagehide", () => { if (rtc) rtc.close(); });
    window.addEventListener("resize", screen.update);
    setInterval(screen.update, 500);
    for (let attempt = 0; ; attempt++) {
      try {
        const schema = await fetchJSON("schema");
        if (schema.status === 200) {
          const body = schema.body;
          state.model = body.model;
          // Every output the engine encodes (primary first); with `codec` alone VP8 may still be an extra.
          if (Array.isArray(body.codecs)) state.serverCodecs = body.codecs;
          $("model").textContent = body.model;
          document.title = body.model + " · reactor-engine";
          controls = window.ReactorControls.build($("controls"), body.commands || {}, request, log);
          const tracks = (body.capabilities && body.capabilities.tracks) || [];
          $("media").hidden = ![media.configure(tracks), sound.configure(tracks)].some(Boolean); // toggles, sound
          syncControls(body.command_state);
          break;
        }
      } catch (e) { /* the server is not up yet */ }
      setStatus("waiting for the server…", "bad");
      await sleep(Math.min(5000, 500 * (attempt + 1)));
    }
    const failure = await OUTCOME.loadFailureFromServer(fetchJSON);
    if (failure) loadFailed(failure);
    else await start();
  }

  window.reactorViewer = { state, meanColor: screen.meanColor, start, stop, request };
  main();
})();
