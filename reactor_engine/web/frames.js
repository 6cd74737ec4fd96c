// The WebSocket transport's frames (docs/protocol.md): the 88-byte header read, the JPEG, raw or
// i420 payload drawn on the canvas. The newest frame wins: one that arrives while another is still
// being drawn replaces any undrawn one (counted in state.missed). Audio frames (pcm_s16le) go to
// `onAudio(rate, channels, samples, trackIndex)` (sound.js).
"use strict";

(() => {
  const HEADER_SIZE = 88;
  const MAGIC = 0x4d524652; // "RFRM" read as a little-endian uint32
  const CODECS = { 1: "jpeg", 2: "raw", 3: "i420" };
  const PCM_S16LE = 4;

  // A player drawing on `canvas`; it keeps the page's `state` (frame counts, size, server latency).
  function player(canvas, context2d, state, log, onAudio) {
    let pending = null; // the newest frame not yet drawn
    let drawing = false;
    let arrivals = []; // [time, bytes] of the frames of the last 2 s

    function onFrame(buffer) {
      if (buffer.byteLength < HEADER_SIZE) return;
      const view = new DataView(buffer);
      if (view.getUint32(0, true) !== MAGIC) return;
      if (view.getUint8(5) === PCM_S16LE) {
        // width = sample rate, height = channels, payload = int16 little-endian, interleaved
        const offset = view.getUint16(6, true);
        const samples = new Int16Array(buffer.slice(offset, offset + (view.getUint32(24, true) & ~1)));
        if (onAudio) onAudio(view.getUint32(16, true), view.getUint32(20, true), samples, view.getUint32(28, true));
        return;
      }
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
      arrivals.push([performance.now(), buffer.byteLength]);
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

    // Frames per second and kbit/s over the last 2 s.
    function rates() {
      const now = performance.now();
      arrivals = arrivals.filter(([t]) => now - t <= 2000);
      const span = arrivals.length > 1 ? arrivals[arrivals.length - 1][0] - arrivals[0][0] : 0;
      if (span <= 0) return { fps: 0, kbps: null };
      const bytes = arrivals.slice(1).reduce((sum, [, size]) => sum + size, 0);
      return { fps: ((arrivals.length - 1) * 1000) / span, kbps: (8 * bytes) / span };
    }

    return { push: onFrame, rates };
  }

  window.ReactorFrames = { player };
})();
