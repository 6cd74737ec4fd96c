// The viewer's camera and microphone: a "Use my camera" / "Use my microphone" toggle for each input
// track the model declares (capabilities.tracks with direction "sendonly"), the local preview, and the
// sending. Over WebRTC the track goes on the input's sendonly transceiver (webrtc.js publish); over the
// WebSocket the camera is sent as JPEG frames (canvas.toBlob, at most WS_VIDEO_FPS) and the microphone
// as pcm_s16le frames of 20 ms, each with the 88-byte frame header whose reserved u32 is the track's
// index in capabilities.tracks (docs/protocol.md). Loaded before viewer.js (window.ReactorMedia).
"use strict";

(() => {
  const HEADER_SIZE = 88;
  const MAGIC = 0x4d524652; // "RFRM" as a little-endian uint32
  const JPEG = 1;
  const PCM_S16LE = 4;
  const WS_VIDEO_FPS = 20; // JPEG frames a second over the WebSocket, at most
  const WS_MAX_BUFFERED = 1 << 20; // bytes queued on the WebSocket above which a camera frame is skipped
  const MAX_WIDTH = 1280; // the engine's default input slot size (input_max_width x input_max_height)
  const MAX_HEIGHT = 720;
  const JPEG_QUALITY = 0.8;
  const AUDIO_RATE = 48000; // the engine's default AudioIn rate (audio_rate), unless the track says
  const PCM_FRAME_MS = 20;
  const CAMERA = { width: { ideal: 640, max: MAX_WIDTH }, height: { ideal: 480, max: MAX_HEIGHT }, frameRate: { ideal: 30, max: 30 } };
  const MICROPHONE = { channelCount: 1, echoCancellation: true, noiseSuppression: true };
  // The microphone's samples, 128 at a time, from the audio thread to the page (module from a Blob URL).
  const CAPTURE_WORKLET = `registerProcessor("reactor-capture", class extends AudioWorkletProcessor {
    process(inputs) { const c = inputs[0] && inputs[0][0]; if (c) this.port.postMessage(c.slice(0)); return true; }
  });`;

  // What went wrong, for the user: permission denied, no such device, or another reason.
  function describeFailure(kind, error) {
    const what = kind === "video" ? "camera" : "microphone";
    const name = error && error.name;
    if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
      return { status: "denied", message: "permission to use the " + what + " was denied (allow it in the site settings)" };
    }
    if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
      return { status: "no_device", message: "no " + what + " found" };
    }
    if (name === "NotReadableError" || name === "TrackStartError") {
      return { status: "busy", message: "the " + what + " is in use by another program or cannot start" };
    }
    return { status: "error", message: "cannot open the " + what + ": " + ((error && error.message) || error) };
  }

  function frameHeader(codec, index, width, height, size, trackIndex) {
    const buffer = new ArrayBuffer(HEADER_SIZE); // timestamps stay 0: the server stamps arrival on its clock
    const view = new DataView(buffer);
    view.setUint32(0, MAGIC, true);
    view.setUint8(4, 1);
    view.setUint8(5, codec);
    view.setUint16(6, HEADER_SIZE, true);
    view.setBigUint64(8, BigInt(index), true);
    view.setUint32(16, width, true);
    view.setUint32(20, height, true);
    view.setUint32(24, size, true);
    view.setUint32(28, trackIndex, true);
    return buffer;
  }

  // `elements` = {toggles (a container), status, preview}; `log(text, isError)`.
  function create(state, elements, log) {
    const media = (state.media = { inputs: [], framesSent: 0, framesSkipped: 0, audioFramesSent: 0, errors: [] });
    const inputs = new Map(); // name -> {name, kind, index, rate, button, status, message, stream, published}
    let rtc = null;
    let ws = null;
    let wsVideoTimer = null;
    let encoding = false;
    let captureContext = null;

    function configure(tracks) {
      (tracks || []).forEach((track, index) => {
        if (!track || track.direction !== "sendonly" || (track.kind !== "video" && track.kind !== "audio")) return;
        if (inputs.has(track.name)) return;
        const sameKind = tracks.filter((t) => t && t.direction === "sendonly" && t.kind === track.kind).length;
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.input = track.name;
        button.dataset.kind = track.kind;
        button.setAttribute("aria-pressed", "false");
        const label = track.kind === "video" ? "Use my camera" : "Use my microphone";
        button.dataset.label = sameKind > 1 ? label + " (" + track.name + ")" : label;
        button.textContent = button.dataset.label;
        const input = { name: track.name, kind: track.kind, index, rate: Number(track.rate) || AUDIO_RATE, button, status: "off", message: "", stream: null, published: false };
        button.addEventListener("click", () => (input.stream ? turnOff(input) : turnOn(input)));
        elements.toggles.insertBefore(button, elements.toggles.querySelector("#sound-toggle"));
        inputs.set(track.name, input);
        media.inputs.push({ name: track.name, kind: track.kind, index, status: "off" });
      });
      show();
      return inputs.size > 0;
    }

    function show() {
      const lines = [];
      for (const input of inputs.values()) {
        const on = Boolean(input.stream);
        input.button.setAttribute("aria-pressed", String(on));
        input.button.classList.toggle("on", on);
        input.button.textContent = on ? input.button.dataset.label.replace("Use my", "Stop my") : input.button.dataset.label;
        input.button.dataset.status = input.status;
        const entry = media.inputs.find((i) => i.name === input.name);
        if (entry) Object.assign(entry, { status: input.status, message: input.message, published: input.published });
        media[input.kind === "video" ? "camera" : "microphone"] = input.status;
        if (input.message) lines.push(input.message);
      }
      elements.status.textContent = lines.join(" · ");
      elements.status.className = "media-status" + ([...inputs.values()].some((i) => /denied|no_device|busy|error|refused|unavailable/.test(i.status)) ? " error" : "");
      const camera = [...inputs.values()].find((i) => i.kind === "video" && i.stream);
      const stream = camera ? camera.stream : null;
      if (elements.preview.srcObject !== stream) {
        elements.preview.srcObject = stream;
        if (stream) elements.preview.play().catch(() => {});
      }
      elements.preview.hidden = !stream;
    }

    function setStatus(input, status, message) {
      input.status = status;
      input.message = message;
      show();
    }

    async function openDevice(kind) {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        const error = new Error("this page is not a secure context (https or localhost), so the browser offers no camera or microphone");
        error.name = "Unavailable";
        throw error;
      }
      try {
        return await navigator.mediaDevices.getUserMedia(kind === "video" ? { video: CAMERA } : { audio: MICROPHONE });
      } catch (e) {
        if (e && e.name === "OverconstrainedError") return navigator.mediaDevices.getUserMedia({ [kind]: true });
        throw e;
      }
    }

    async function turnOn(input) {
      input.button.disabled = true;
      setStatus(input, "starting", "");
      try {
        input.stream = await openDevice(input.kind);
      } catch (e) {
        const failure = e && e.name === "Unavailable" ? { status: "unavailable", message: e.message } : describeFailure(input.kind, e);
        media.errors.push(failure);
        log(failure.message, true);
        input.button.disabled = false;
        return setStatus(input, failure.status, failure.message);
      }
      const track = input.stream.getTracks()[0];
      track.addEventListener("ended", () => { if (input.stream) turnOff(input, "the device stopped"); });
      const settings = track.getSettings ? track.getSettings() : {};
      if (input.kind === "video") Object.assign(media, { cameraWidth: settings.width || 0, cameraHeight: settings.height || 0 });
      input.button.disabled = false;
      setStatus(input, "on", "");
      log((input.kind === "video" ? "camera" : "microphone") + " on" + (settings.width ? " (" + settings.width + "×" + settings.height + ")" : ""));
      await publish(input);
    }

    async function turnOff(input, why) {
      const stream = input.stream;
      input.stream = null;
      if (input.published && rtc) await rtc.unpublish(input.name).catch(() => {});
      input.published = false;
      if (stream) for (const track of stream.getTracks()) track.stop();
      if (input.kind === "audio") stopCapture();
      setStatus(input, "off", why || "");
      log((input.kind === "video" ? "camera" : "microphone") + " off" + (why ? ": " + why : ""));
    }

    // Send an input that is on over the live transport (none yet: when one attaches).
    async function publish(input) {
      try {
        await send(input);
      } catch (e) {
        input.published = false;
        if (!rtc && !ws) return; // the connection closed meanwhile: nothing to report
        log("cannot send " + input.name + ": " + (e.message || e), true);
        setStatus(input, "error", "cannot send the " + (input.kind === "video" ? "camera" : "microphone") + ": " + (e.message || e));
      }
    }

    async function send(input) {
      if (!input.stream || input.published) return;
      const track = input.stream.getTracks()[0];
      if (rtc) {
        const connection = rtc;
        const result = await connection.publish(input.name, track);
        if (!input.stream || rtc !== connection) return; // turned off, or the connection went, meanwhile
        if (!result.ok) {
          log("the server refused " + input.name + ": " + result.message, true);
          return setStatus(input, "refused", "the server refused the " + (input.kind === "video" ? "camera" : "microphone") + ": " + result.message);
        }
        input.published = true;
      } else if (ws) {
        input.published = true;
        if (input.kind === "video") startWsVideo();
        else await startWsAudio(input);
      } else {
        return;
      }
      setStatus(input, "on", "");
      log("sending " + input.name + " over " + (rtc ? "WebRTC" : "the WebSocket"));
    }

    // -- WebSocket sending --------------------------------------------------------------------------

    function sendable() {
      return ws && ws.readyState === WebSocket.OPEN;
    }

    function startWsVideo() {
      if (wsVideoTimer) return;
      const canvas = document.createElement("canvas");
      const context = canvas.getContext("2d");
      const counters = new Map();
      wsVideoTimer = setInterval(() => {
        const preview = elements.preview;
        if (!sendable() || !preview.videoWidth) return;
        for (const input of inputs.values()) {
          if (input.kind !== "video" || !input.published) continue;
          if (encoding || ws.bufferedAmount > WS_MAX_BUFFERED) { media.framesSkipped++; continue; }
          const scale = Math.min(1, MAX_WIDTH / preview.videoWidth, MAX_HEIGHT / preview.videoHeight);
          canvas.width = Math.round(preview.videoWidth * scale);
          canvas.height = Math.round(preview.videoHeight * scale);
          context.drawImage(preview, 0, 0, canvas.width, canvas.height);
          encoding = true;
          const socket = ws;
          canvas.toBlob((blob) => {
            encoding = false;
            if (!blob || socket !== ws || !sendable()) return;
            const index = counters.get(input.name) || 0;
            counters.set(input.name, index + 1);
            ws.send(new Blob([frameHeader(JPEG, index, canvas.width, canvas.height, blob.size, input.index), blob]));
            media.framesSent++;
          }, "image/jpeg", JPEG_QUALITY);
        }
      }, 1000 / WS_VIDEO_FPS);
    }

    async function startWsAudio(input) {
      stopCapture();
      const context = new AudioContext({ sampleRate: input.rate });
      captureContext = context;
      const module = URL.createObjectURL(new Blob([CAPTURE_WORKLET], { type: "text/javascript" }));
      await context.audioWorklet.addModule(module);
      URL.revokeObjectURL(module);
      if (captureContext !== context || !input.stream) return;
      const source = context.createMediaStreamSource(input.stream);
      const node = new AudioWorkletNode(context, "reactor-capture", { numberOfOutputs: 0 });
      const frame = new Int16Array(Math.round((input.rate * PCM_FRAME_MS) / 1000));
      let filled = 0;
      let index = 0;
      node.port.onmessage = (event) => {
        for (const sample of event.data) {
          frame[filled++] = Math.max(-32768, Math.min(32767, Math.round(sample * 32767)));
          if (filled < frame.length) continue;
          filled = 0;
          if (!sendable() || !input.published) continue;
          ws.send(new Blob([frameHeader(PCM_S16LE, index++, input.rate, 1, frame.byteLength, input.index), frame.slice(0)]));
          media.audioFramesSent++;
        }
      };
      source.connect(node);
      context.resume().catch(() => {});
    }

    function stopCapture() {
      if (captureContext) captureContext.close().catch(() => {});
      captureContext = null;
    }

    // -- transports ---------------------------------------------------------------------------------

    async function attachRtc(connection) {
      detach();
      rtc = connection;
      for (const input of inputs.values()) await publish(input);
    }

    async function attachWebSocket(socket) {
      detach();
      ws = socket;
      for (const input of inputs.values()) await publish(input);
    }

    // The transport is gone: nothing is sent; the devices stay on for the next connection.
    function detach() {
      rtc = null;
      ws = null;
      clearInterval(wsVideoTimer);
      wsVideoTimer = null;
      encoding = false;
      stopCapture();
      for (const input of inputs.values()) input.published = false;
      show();
    }

    // The WebSocket's hello lists the tracks with the index its frame headers use.
    function useIndices(tracks) {
      for (const track of tracks) {
        const input = inputs.get(track.name);
        if (input && Number.isInteger(track.index)) input.index = track.index;
        if (input && Number(track.rate) > 0) input.rate = Number(track.rate); // audio: the rate the track takes
      }
    }

    return { configure, attachRtc, attachWebSocket, detach, useIndices };
  }

  window.ReactorMedia = { create, frameHeader, HEADER_SIZE, PCM_S16LE };
})();
