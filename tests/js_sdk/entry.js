// The page script of the js-sdk 2.9 test: the published @reactor-team/js-sdk, unmodified, bundled
// with esbuild at test time (never checked in). window.runJsSdk(apiUrl, seconds) connects in local
// mode, counts the video frames the browser decodes, reads the frame index the test model paints into
// each, sends a command and resolves to what it saw.
import { Reactor } from "@reactor-team/js-sdk";

const INDEX_BITS = 16;

function readIndex(ctx, width, height) {
  const row = Math.max(8, Math.floor(height / 24)) >> 1;
  const block = Math.floor(width / INDEX_BITS);
  const pixels = ctx.getImageData(0, row, width, 1).data;
  let value = 0;
  for (let bit = 0; bit < INDEX_BITS; bit++) {
    const x = Math.floor((bit + 0.5) * block) * 4;
    const mean = (pixels[x] + pixels[x + 1] + pixels[x + 2]) / 3;
    value = (value << 1) | (mean > 127 ? 1 : 0);
  }
  return value;
}

window.runJsSdk = async function (apiUrl, seconds) {
  const out = { statuses: [], messages: [], frames: 0, indices: [], errors: [] };
  const reactor = new Reactor({ modelName: "webrtc-test", local: true, apiUrl });
  reactor.on("statusChanged", (status) => out.statuses.push(status));
  reactor.on("message", (message) => out.messages.push(message));
  reactor.on("error", (error) => out.errors.push(String(error && error.message ? error.message : error)));
  const video = document.getElementById("video");
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  reactor.on("trackReceived", (name, track, stream) => {
    video.srcObject = stream || new MediaStream([track]);
    const onFrame = () => {
      out.frames += 1;
      if (video.videoWidth) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        ctx.drawImage(video, 0, 0);
        out.indices.push(readIndex(ctx, canvas.width, canvas.height));
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  });
  const started = performance.now();
  await reactor.connect();
  const ready = () => out.statuses.includes("ready");
  while (!ready() && performance.now() - started < 15000) await new Promise((r) => setTimeout(r, 10));
  out.ready_s = (performance.now() - started) / 1000;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await reactor.sendCommand("echo", { text: "from js" });
  const sent = performance.now();
  while (!out.messages.length && performance.now() - sent < 5000) await new Promise((r) => setTimeout(r, 20));
  out.session_id = reactor.sessionId || null;
  await reactor.disconnect();
  return out;
};
