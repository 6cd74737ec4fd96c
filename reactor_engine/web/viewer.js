// The reactor-engine viewer: starts (or joins) a session, draws its frames on a canvas, builds a
// control for every command of GET /schema, and shows fps and latency. Protocol: docs/protocol.md.
"use strict";

(() => {
  const HEADER_SIZE = 88;
  const MAGIC = 0x4d524652; // "RFRM" read as a little-endian uint32
  const CODECS = { 1: "jpeg", 2: "raw", 3: "i420" };
  const COMMAND_TIMEOUT_MS = 15000;
  const LOG_LIMIT = 100;

  // Relative to the page, so the viewer also works where a host mounts the app under a prefix.
  const basePath = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const base = new URL(basePath, location.origin);
  const url = (path) => new URL(path, base);
  const wsUrl = (path) => {
    const u = url(path);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return u;
  };

  const $ = (id) => document.getElementById(id);
  const canvas = $("screen");
  const context2d = canvas.getContext("2d", { willReadFrequently: true });

  // Everything the page knows, also read by the browser test (window.reactorViewer).
  const state = {
    model: null,
    sessionId: null,
    status: "starting",
    framesReceived: 0,
    framesDrawn: 0,
    lastIndex: -1,
    lastDrawnIndex: -1,
    missed: 0,
    width: 0,
    height: 0,
    codec: null,
    serverLatencyMs: null,
    rttMs: null,
    fps: 0,
    errors: [],
    replies: 0,
  };
  let ws = null;
  let pending = null; // the newest frame not yet drawn; older undrawn frames are skipped (counted)
  let drawing = false;
  let arrivals = [];
  let requestSeq = 0;
  const waiting = new Map(); // request_id -> {resolve, timer}
  let pingTimer = null;

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

  async function fetchJSON(path, options) {
    const response = await fetch(url(path), options);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { status: response.status, body };
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // -- session ----------------------------------------------------------------------------------

  async function start() {
    $("start").hidden = true;
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
      if (result.status === 201) return connect(result.body.session_id);
      if (result.status === 409 && error && error.session_id) {
        log("a session is already running; joining it");
        return connect(error.session_id);
      }
      if (result.status === 503 && error && (error.code === "loading" || error.code === "not_ready")) {
        setStatus("loading the model…");
        await sleep(1000);
        continue;
      }
      setStatus("cannot start a session: " + (error ? error.message : "HTTP " + result.status), "bad");
      $("start").hidden = false;
      return;
    }
  }

  async function stop() {
    if (!state.sessionId) return;
    $("stop").disabled = true;
    await fetchJSON("sessions/" + encodeURIComponent(state.sessionId), { method: "DELETE" });
  }

  function connect(sessionId) {
    state.sessionId = sessionId;
    setStatus("connecting…");
    ws = new WebSocket(wsUrl("sessions/" + encodeURIComponent(sessionId) + "/ws"));
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => {
      if (typeof event.data === "string") onText(event.data);
      else onFrame(event.data);
    };
    ws.onclose = (event) => {
      clearInterval(pingTimer);
      for (const [, entry] of waiting) entry.resolve({ ok: false, error: { code: "disconnected", message: "connection closed" } });
      waiting.clear();
      const why = event.reason || "code " + event.code;
      setStatus("session closed (" + why + ")", event.code === 1000 ? "" : "bad");
      state.sessionId = null;
      $("stop").hidden = true;
      $("start").hidden = false;
    };
    ws.onerror = () => log("WebSocket error", true);
    pingTimer = setInterval(ping, 1000);
  }

  function send(message) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  function request(message) {
    const id = "v" + (++requestSeq);
    return new Promise((resolve) => {
      if (!send({ ...message, request_id: id })) {
        resolve({ ok: false, error: { code: "not_connected", message: "no session is connected" } });
        return;
      }
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve({ ok: false, error: { code: "timeout", message: "no reply within " + COMMAND_TIMEOUT_MS / 1000 + " s" } });
      }, COMMAND_TIMEOUT_MS);
      waiting.set(id, { resolve, timer });
    });
  }

  function ping() {
    send({ type: "ping", request_id: "ping", t: performance.now() });
  }

  // -- messages ---------------------------------------------------------------------------------

  function onText(text) {
    let message;
    try { message = JSON.parse(text); } catch (e) { log("unreadable message from the server", true); return; }
    switch (message.type) {
      case "hello":
        state.codec = message.codec;
        setStatus("live · session " + message.session_id.slice(0, 8), "live");
        $("stop").hidden = false;
        $("stop").disabled = false;
        log("connected to session " + message.session_id);
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
        log("session " + message.event + (message.reason ? ": " + message.reason : ""), message.event !== "started" && message.reason === "error");
        if (message.event === "ended") setStatus("session ended (" + message.reason + ")");
        break;
      case "message":
        log("model: " + JSON.stringify(message.data));
        break;
      case "error":
        state.errors.push(message);
        log("error " + message.code + ": " + message.message, true);
        break;
      default:
        log("message: " + text.slice(0, 200));
    }
  }

  // -- frames -----------------------------------------------------------------------------------

  function onFrame(buffer) {
    if (buffer.byteLength < HEADER_SIZE) return;
    const view = new DataView(buffer);
    if (view.getUint32(0, true) !== MAGIC) return;
    const frame = {
      codec: CODECS[view.getUint8(5)],
      index: Number(view.getBigUint64(8, true)),
      width: view.getUint32(16, true),
      height: view.getUint32(20, true),
      payload: new Uint8Array(buffer, view.getUint16(6, true), view.getUint32(24, true)),
    };
    const commitNs = view.getBigInt64(48, true);
    const sendNs = view.getBigInt64(80, true);
    state.serverLatencyMs = Number(sendNs - commitNs) / 1e6;
    if (state.lastIndex >= 0 && frame.index > state.lastIndex + 1) state.missed += frame.index - state.lastIndex - 1;
    state.lastIndex = frame.index;
    state.framesReceived++;
    arrivals.push(performance.now());
    if (pending) state.missed++;
    pending = frame;
    if (!drawing) draw();
  }

  async function draw() {
    drawing = true;
    try {
      while (pending) {
        const frame = pending;
        pending = null;
        if (canvas.width !== frame.width || canvas.height !== frame.height) {
          canvas.width = frame.width;
          canvas.height = frame.height;
        }
        if (frame.codec === "jpeg") {
          const bitmap = await createImageBitmap(new Blob([frame.payload], { type: "image/jpeg" }));
          context2d.drawImage(bitmap, 0, 0);
          bitmap.close();
        } else {
          context2d.putImageData(toImageData(frame), 0, 0);
        }
        state.width = frame.width;
        state.height = frame.height;
        state.framesDrawn++;
        state.lastDrawnIndex = frame.index;
      }
    } catch (e) {
      log("cannot draw a frame: " + e, true);
    } finally {
      drawing = false;
    }
  }

  function toImageData(frame) {
    const { width, height, payload } = frame;
    const image = context2d.createImageData(width, height);
    const out = image.data;
    if (frame.codec === "raw") {
      for (let i = 0, j = 0; i < width * height; i++, j += 3) {
        out[4 * i] = payload[j]; out[4 * i + 1] = payload[j + 1]; out[4 * i + 2] = payload[j + 2]; out[4 * i + 3] = 255;
      }
      return image;
    }
    // i420: full-size Y, then U and V at half size in each direction (BT.601, full range).
    const chromaWidth = (width + 1) >> 1;
    const uOffset = width * height;
    const vOffset = uOffset + chromaWidth * ((height + 1) >> 1);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const c = (y >> 1) * chromaWidth + (x >> 1);
        const Y = payload[y * width + x], U = payload[uOffset + c] - 128, V = payload[vOffset + c] - 128;
        const o = 4 * (y * width + x);
        out[o] = Y + 1.402 * V; out[o + 1] = Y - 0.344 * U - 0.714 * V; out[o + 2] = Y + 1.772 * U; out[o + 3] = 255;
      }
    }
    return image;
  }

  function meanColor() {
    // The average colour of the canvas, sampled on a grid (the browser test's pixel check).
    const { width, height } = canvas;
    const data = context2d.getImageData(0, 0, width, height).data;
    const sum = [0, 0, 0];
    let n = 0;
    const step = Math.max(1, Math.floor(Math.min(width, height) / 32));
    for (let y = 0; y < height; y += step) {
      for (let x = 0; x < width; x += step) {
        const o = 4 * (y * width + x);
        sum[0] += data[o]; sum[1] += data[o + 1]; sum[2] += data[o + 2];
        n++;
      }
    }
    return sum.map((v) => v / Math.max(1, n));
  }

  function updateStats() {
    const now = performance.now();
    arrivals = arrivals.filter((t) => now - t <= 2000);
    state.fps = arrivals.length > 1 ? ((arrivals.length - 1) * 1000) / (arrivals[arrivals.length - 1] - arrivals[0]) : 0;
    const ms = (v) => (v === null ? "–" : v.toFixed(1) + " ms");
    $("stat-fps").textContent = state.fps.toFixed(1);
    $("stat-server").textContent = ms(state.serverLatencyMs);
    $("stat-rtt").textContent = ms(state.rttMs);
    $("stat-latency").textContent =
      state.serverLatencyMs === null ? "–" : ms(state.serverLatencyMs + (state.rttMs === null ? 0 : state.rttMs / 2));
    $("stat-frame").textContent = state.lastIndex < 0 ? "–" : String(state.lastIndex);
    $("stat-size").textContent = state.width ? state.width + "×" + state.height + " " + (state.codec || "") : "–";
    $("stat-missed").textContent = String(state.missed);
  }

  // -- controls generated from the command schema -------------------------------------------------

  function unwrap(schema) {
    // Optional[X] is {"anyOf": [X, {"type": "null"}], "default": ...}: use X, keep the outer default.
    if (schema.anyOf) {
      const inner = schema.anyOf.find((s) => s.type !== "null") || {};
      return { ...inner, ...schema, anyOf: undefined };
    }
    return schema;
  }

  function makeField(key, rawSchema, required) {
    const schema = unwrap(rawSchema);
    const label = document.createElement("label");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = schema.title || key;
    if (schema.description) label.title = schema.description;
    label.append(name);
    let input;
    let read;
    let kind;
    const choices = schema.enum || (schema.const !== undefined ? [schema.const] : null);
    if (choices) {
      kind = "select";
      input = document.createElement("select");
      for (const choice of choices) {
        const option = document.createElement("option");
        option.value = JSON.stringify(choice);
        option.textContent = String(choice);
        input.append(option);
      }
      if (schema.default !== undefined) input.value = JSON.stringify(schema.default);
      read = () => JSON.parse(input.value);
    } else if (schema.type === "boolean") {
      kind = "checkbox";
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = schema.default === true;
      read = () => input.checked;
    } else if (schema.type === "number" || schema.type === "integer") {
      const min = schema.minimum ?? schema.exclusiveMinimum;
      const max = schema.maximum ?? schema.exclusiveMaximum;
      input = document.createElement("input");
      const integer = schema.type === "integer";
      if (min !== undefined && max !== undefined) {
        kind = "slider";
        input.type = "range";
        input.min = String(min);
        input.max = String(max);
        input.step = integer ? "1" : "any";
        input.value = String(schema.default ?? min);
        const shown = document.createElement("output");
        shown.textContent = input.value;
        input.addEventListener("input", () => { shown.textContent = Number(input.value).toFixed(integer ? 0 : 2); });
        label.append(input, shown);
        read = () => (integer ? Math.round(Number(input.value)) : Number(input.value));
        input.name = key;
        return { label, input, read, kind, required };
      }
      kind = "number";
      input.type = "number";
      input.step = integer ? "1" : "any";
      if (min !== undefined) input.min = String(min);
      if (max !== undefined) input.max = String(max);
      if (schema.default !== undefined && schema.default !== null) input.value = String(schema.default);
      read = () => (input.value === "" ? undefined : integer ? parseInt(input.value, 10) : Number(input.value));
    } else {
      kind = "text";
      input = document.createElement("input");
      input.type = "text";
      if (schema.maxLength) input.maxLength = schema.maxLength * 4; // the server says when it is too long
      if (typeof schema.default === "string") input.value = schema.default;
      input.placeholder = schema.description || (schema.type || "value");
      read = () => input.value;
    }
    input.name = key;
    label.append(input);
    return { label, input, read, kind, required };
  }

  function buildControls(commands) {
    const form = $("controls");
    form.textContent = "";
    for (const [name, schema] of Object.entries(commands)) {
      const set = document.createElement("fieldset");
      set.dataset.command = name;
      const legend = document.createElement("legend");
      legend.textContent = name;
      set.append(legend);
      if (schema.description) {
        const p = document.createElement("p");
        p.className = "description";
        p.textContent = schema.description;
        set.append(p);
      }
      const required = new Set(schema.required || []);
      const fields = Object.entries(schema.properties || {}).map(([key, s]) => [key, makeField(key, s, required.has(key))]);
      const result = document.createElement("div");
      result.className = "result";
      const sendIt = async () => {
        const data = {};
        for (const [key, field] of fields) {
          const value = field.read();
          if (value !== undefined) data[key] = value;
        }
        result.className = "result";
        result.textContent = "sending…";
        const reply = await request({ type: name, data });
        if (reply.ok) {
          result.className = "result ok";
          result.textContent = reply.result === null || reply.result === undefined ? "ok" : "ok: " + JSON.stringify(reply.result);
        } else {
          result.className = "result error";
          result.textContent = reply.error.code + ": " + reply.error.message;
          log(name + " failed: " + reply.error.message, true);
        }
      };
      for (const [, field] of fields) set.append(field.label);
      const immediate = fields.length === 1 && fields[0][1].kind !== "text" && fields[0][1].kind !== "number";
      if (immediate) {
        fields[0][1].input.addEventListener("change", sendIt);
      } else {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = fields.length ? "Send" : name;
        button.addEventListener("click", sendIt);
        set.append(button);
        for (const [, field] of fields) {
          if (field.kind === "text" || field.kind === "number") {
            field.input.addEventListener("keydown", (event) => {
              if (event.key === "Enter") { event.preventDefault(); sendIt(); }
            });
          }
        }
      }
      set.append(result);
      form.append(set);
    }
    if (!Object.keys(commands).length) form.textContent = "This model takes no commands.";
  }

  // -- start ------------------------------------------------------------------------------------

  async function main() {
    $("start").addEventListener("click", start);
    $("stop").addEventListener("click", stop);
    setInterval(updateStats, 500);
    for (let attempt = 0; ; attempt++) {
      try {
        const schema = await fetchJSON("schema");
        if (schema.status === 200) {
          state.model = schema.body.model;
          $("model").textContent = schema.body.model;
          document.title = schema.body.model + " · reactor-engine";
          buildControls(schema.body.commands || {});
          break;
        }
      } catch (e) { /* the server is not up yet */ }
      setStatus("waiting for the server…", "bad");
      await sleep(Math.min(5000, 500 * (attempt + 1)));
    }
    await start();
  }

  window.reactorViewer = { state, meanColor, start, stop, request };
  main();
})();
