// The model's sound (its AudioOut tracks): over WebRTC the remote audio track plays in an <audio>
// element; over the WebSocket the pcm_s16le frames (docs/protocol.md: width = sample rate, height =
// channels) are queued on an AudioContext, a little ahead of its clock. One mute toggle for both. A
// browser that refuses to play sound before the user touched the page gets a "Turn sound on" button.
// Loaded before viewer.js (window.ReactorSound).
"use strict";

(() => {
  const LEAD_S = 0.05; // how far ahead of the AudioContext's clock a frame is scheduled
  const MAX_AHEAD_S = 0.3; // a frame that would play later than this is dropped (the queue stays short)

  // `elements` = {button, audio}; `state.sound` is kept up to date (also read by the tests).
  function create(state, elements, log) {
    const sound = (state.sound = { tracks: [], muted: false, blocked: false, playing: false, framesReceived: 0, framesPlayed: 0, framesDropped: 0 });
    let context = null;
    let gain = null;
    let next = 0;

    function configure(tracks) {
      sound.tracks = (tracks || []).filter((t) => t && t.kind === "audio" && t.direction === "recvonly").map((t) => t.name);
      elements.button.hidden = sound.tracks.length === 0;
      show();
      return sound.tracks.length > 0;
    }

    function show() {
      const button = elements.button;
      button.textContent = sound.blocked ? "Turn sound on" : sound.muted ? "Unmute" : "Mute";
      button.setAttribute("aria-pressed", String(sound.muted));
      button.dataset.state = sound.blocked ? "blocked" : sound.muted ? "muted" : "on";
    }

    function blocked(why) {
      if (!sound.blocked) log("the browser holds the sound until you press \u201cTurn sound on\u201d (" + why + ")");
      sound.blocked = true;
      show();
    }

    // WebRTC: the model's audio track.
    function playTrack(name, track) {
      const audio = elements.audio;
      audio.srcObject = new MediaStream([track]);
      audio.muted = sound.muted;
      sound.playing = false;
      audio.play().then(() => { sound.playing = true; sound.blocked = false; show(); }, (e) => blocked(e.name || "autoplay"));
      log("playing the model's sound (" + name + ") over WebRTC");
    }

    // WebSocket: one pcm_s16le frame.
    function pushPcm(rate, channels, samples) {
      sound.framesReceived++;
      if (!rate || !channels || samples.length < channels) return;
      if (!context) {
        context = new AudioContext();
        gain = context.createGain();
        gain.gain.value = sound.muted ? 0 : 1;
        gain.connect(context.destination);
      }
      if (context.state === "suspended") {
        context.resume().catch(() => {});
        if (context.state === "suspended") { blocked("AudioContext suspended"); sound.framesDropped++; return; }
      }
      const frames = Math.floor(samples.length / channels);
      const buffer = context.createBuffer(channels, frames, rate);
      for (let c = 0; c < channels; c++) {
        const out = buffer.getChannelData(c);
        for (let i = 0; i < frames; i++) out[i] = samples[i * channels + c] / 32768;
      }
      const now = context.currentTime;
      if (next < now + LEAD_S) next = now + LEAD_S;
      if (next > now + MAX_AHEAD_S) { sound.framesDropped++; return; }
      const source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(gain);
      source.start(next);
      next += buffer.duration;
      sound.framesPlayed++;
      sound.playing = true;
    }

    function toggle() {
      if (sound.blocked) {
        sound.blocked = false;
        sound.muted = false;
        if (context) context.resume().catch(() => {});
        if (elements.audio.srcObject) elements.audio.play().then(() => { sound.playing = true; }, (e) => blocked(e.name));
      } else {
        sound.muted = !sound.muted;
      }
      elements.audio.muted = sound.muted;
      if (gain) gain.gain.value = sound.muted ? 0 : 1;
      show();
    }

    // WebRTC: what the model's audio did on the wire (inbound-rtp audio), into state.sound.
    async function readStats(pc) {
      if (!sound.tracks.length || !pc) return;
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type !== "inbound-rtp" || s.kind !== "audio") return;
        Object.assign(sound, { packetsReceived: s.packetsReceived || 0, samplesReceived: s.totalSamplesReceived || 0, level: s.audioLevel ?? null });
      });
    }

    function stop() {
      elements.audio.srcObject = null;
      sound.playing = false;
      next = 0;
    }

    elements.button.addEventListener("click", toggle);
    return { configure, playTrack, pushPcm, readStats, stop };
  }

  window.ReactorSound = { create };
})();
