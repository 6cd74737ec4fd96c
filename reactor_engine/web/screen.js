// What the viewer shows around the stream: the WebRTC <video> (play), the stats bar, the stream's size fitted to the window (a
// square or tall stream is scaled down so the stats bar stays on screen), and the mean colour of what
// is on screen (the browser tests' pixel check).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const MIN_HEIGHT_PX = 120; // below this the page scrolls instead of shrinking the stream further

  function create(state, frames, canvas, video, context2d) {
    const sampler = document.createElement("canvas"); // the <video> is copied here for meanColor()
    const samplerContext = sampler.getContext("2d", { willReadFrequently: true });
    const stage = canvas.parentElement;

    // The height the stream may take: the window's, less what is above it and the stats bar below it.
    function fit() {
      const shown = state.transport === "webrtc" ? video : canvas;
      const top = shown.getBoundingClientRect().top + window.scrollY;
      const stats = $("stats");
      const below = stats.offsetHeight + parseFloat(getComputedStyle(stats).marginTop || "0");
      const bottom = parseFloat(getComputedStyle(stage.parentElement).paddingBottom || "0");
      const height = Math.max(MIN_HEIGHT_PX, Math.floor(window.innerHeight - top - below - bottom));
      const width = state.width || (shown === video ? video.videoWidth : canvas.width);
      const tall = state.height || (shown === video ? video.videoHeight : canvas.height);
      stage.style.setProperty("--fit-height", height + "px");
      if (width && tall) stage.style.setProperty("--aspect", String(width / tall));
    }

    function meanColor() {
      // The average colour of the canvas, or of the <video> copied to a canvas, sampled on a grid.
      let context = context2d;
      let { width, height } = canvas;
      if (state.transport === "webrtc") {
        width = video.videoWidth;
        height = video.videoHeight;
        if (!width || !height) return null;
        if (sampler.width !== width || sampler.height !== height) { sampler.width = width; sampler.height = height; }
        samplerContext.drawImage(video, 0, 0, width, height);
        context = samplerContext;
      }
      const data = context.getImageData(0, 0, width, height).data;
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

    // WebRTC: the output video track on the <video>; its presented frames counted until it is replaced.
    function play(track) {
      if (video.srcObject) return;
      const stream = new MediaStream([track]);
      video.srcObject = stream;
      video.play().catch(() => {}); // muted + autoplay: allowed without a gesture
      const onFrame = (now, metadata) => {
        if (video.srcObject !== stream) return;
        state.framesDrawn++;
        state.width = metadata.width;
        state.height = metadata.height;
        video.requestVideoFrameCallback(onFrame);
      };
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
    }

    function update() {
      if (state.transport !== "webrtc") {
        const { fps, kbps } = frames.rates();
        state.fps = fps;
        state.bitrateKbps = kbps;
        state.latencyMs = state.serverLatencyMs === null ? null : state.serverLatencyMs + (state.rttMs === null ? 0 : state.rttMs / 2);
      }
      const ms = (v) => (v === null || v === undefined ? "–" : v.toFixed(1) + " ms");
      $("stat-transport").textContent = state.transport ? state.transport + (state.codec ? " · " + state.codec : "") : "–";
      $("stat-fps").textContent = state.fps.toFixed(1);
      $("stat-bitrate").textContent = state.bitrateKbps === null ? "–" : (state.bitrateKbps / 1000).toFixed(2) + " Mbit/s";
      $("stat-server").textContent = ms(state.serverLatencyMs);
      $("stat-rtt").textContent = ms(state.rttMs);
      $("stat-latency").textContent = ms(state.latencyMs);
      $("stat-latency").title =
        state.transport === "webrtc"
          ? "server (commit → encoded, p50) + RTT/2 + jitter buffer + decode"
          : "server (frame committed → sent) + half the WebSocket round trip";
      $("stat-frame").textContent = state.lastIndex < 0 ? "–" : String(state.lastIndex);
      $("stat-size").textContent = state.width ? state.width + "×" + state.height : "–";
      $("stat-missed").textContent = String(state.missed);
      fit();
    }

    return { update, meanColor, play };
  }

  window.ReactorScreen = { create };
})();
