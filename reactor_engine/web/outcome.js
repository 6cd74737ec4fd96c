// What the viewer says when a model does not run as asked: a load failure (GET /health, or a 503
// `load_failed`), and how a session ended (the `ended` event, the WebSocket refusal `session_ended`
// of a session that ended before the page attached, or GET /sessions/{id}/stats). The error's text
// stays in the server log; the page shows its kind, when, and the error id to look it up by.
"use strict";

(() => {
  const REASONS = {
    stopped: "the session was stopped",
    returned: "the model ended the session (start_session returned)",
    client_left: "the session stopped: no viewer was connected",
    max_duration: "the session reached its maximum duration",
    shutdown: "the server shut down",
    unhealthy: "the model ignored the stop; the engine is unhealthy (see the server log)",
  };

  // "the model failed to load (ValueError); see the server log", or null when /health says it loaded.
  function loadFailure(health) {
    if (!health || health.state !== "error") return null;
    return "the model failed to load (" + (health.error || "an error") + "); see the server log";
  }

  // {reason, error, error_id, duration_s} from an `ended` event, a `session_ended` refusal or stats.
  function endOf(source) {
    if (!source) return null;
    return {
      reason: source.reason ?? source.end_reason ?? null,
      error: source.error ?? null,
      error_id: source.error_id ?? null,
      duration_s: typeof source.duration_s === "number" ? source.duration_s : null,
    };
  }

  function describeEnd(end) {
    const after = end.duration_s === null ? "" : " after " + end.duration_s.toFixed(1) + " s";
    if (end.error || end.reason === "error") {
      const kind = end.error ? " (" + end.error + ")" : "";
      const id = end.error_id ? "; error id " + end.error_id + " in the server log" : "; see the server log";
      return "the session ended with an error" + kind + after + id;
    }
    const reason = String(end.reason || "");
    const why =
      REASONS[reason] ||
      (reason.startsWith("stopped") ? "the session was " + reason : "the session ended (" + (reason || "no reason given") + ")");
    return why + after;
  }

  // GET /health: the load failure's text, or null (also when the server cannot be reached).
  async function loadFailureFromServer(fetchJSON) {
    try {
      return loadFailure((await fetchJSON("health")).body);
    } catch (e) {
      return null;
    }
  }

  // GET /sessions/{id}/stats of an ended session: its end, or null (running, unknown, unreachable).
  async function endFromServer(fetchJSON, sessionId) {
    if (!sessionId) return null;
    try {
      const result = await fetchJSON("sessions/" + encodeURIComponent(sessionId) + "/stats");
      return result.status === 200 && result.body && result.body.end_reason ? endOf(result.body) : null;
    } catch (e) {
      return null;
    }
  }

  window.ReactorOutcome = { loadFailure, endOf, describeEnd, loadFailureFromServer, endFromServer };
})();
