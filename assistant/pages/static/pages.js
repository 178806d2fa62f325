// The kiosk and phone chat pages: one conversation per visitor, keyed by a server-minted
// session token kept only in this script's memory (a reload or a reset starts a new one).
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("linli-config").textContent);
  const T = config.text;
  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const question = $("question");
  const micButton = $("mic");
  const statusLine = $("status");

  let session = null;        // {session_token, session_id, expires_at}
  let starting = null;       // the pending POST /api/v1/sessions
  let lastWorkerMessage = 0; // the poll's `after`
  let busy = false;          // a message or a recording is on its way
  let generation = 0;        // bumped by a reset: answers to an older conversation are dropped
  let lastActivity = Date.now();
  let used = false;          // anything happened since the last reset (an untouched kiosk is not reset)
  let recorder = null;
  let recordTimer = null;

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (_, name) => String(values[name]));
  }

  // ---- sessions ---------------------------------------------------------------------------------

  async function startSession() {
    if (!starting) {
      starting = (async () => {
        const response = await fetch("/api/v1/sessions", {
          method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({channel: config.mode, centre: null}),
        });
        if (!response.ok) throw await problem(response);
        session = await response.json();
        lastWorkerMessage = 0;
        document.body.dataset.session = session.session_id;
        return session;
      })().finally(() => { starting = null; });
    }
    return starting;
  }

  async function ensureSession() {
    return session || startSession();
  }

  // ---- calls ------------------------------------------------------------------------------------

  class Problem extends Error {
    constructor(status, body) {
      super((body && body.message) || "HTTP " + status);
      this.status = status;
      this.body = body || {};
    }
  }

  async function problem(response) {
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return new Problem(response.status, body);
  }

  // A call for the current resident; a token that expired is replaced once and the call retried.
  async function call(path, options, retried) {
    const current = await ensureSession();
    const headers = Object.assign({"X-Session-Token": current.session_token}, options.headers || {});
    const response = await fetch(path, Object.assign({}, options, {headers}));
    if (response.status === 401 && !retried) {
      session = null;
      return call(path, typeof options.rebuild === "function" ? options.rebuild() : options, true);
    }
    if (!response.ok) throw await problem(response);
    return response.json();
  }

  // What the resident reads when a call fails: never a blank, never a stack trace.
  function friendly(error) {
    if (!(error instanceof Problem)) return T.error_network;
    if (error.status === 422 || error.status === 413) return T.error_invalid;
    if (error.status >= 500) return T.error_generic;
    const message = error.body && typeof error.body.message === "string" ? error.body.message.trim() : "";
    return message ? fill(T.error_with_message, {message}) : T.error_generic;
  }

  // ---- the conversation on screen ---------------------------------------------------------------

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  function showResident(text, heard) {
    const bubble = element("div", "msg me");
    if (heard) {
      bubble.classList.add("heard");
      bubble.dataset.testid = "transcript";
      bubble.appendChild(element("span", "label", T.you_said));
    }
    bubble.appendChild(element("p", null, text));
    log.appendChild(bubble);
    scrollDown();
  }

  function showThinking(text) {
    const bubble = element("div", "msg bot thinking");
    bubble.appendChild(element("p", null, text));
    log.appendChild(bubble);
    scrollDown();
    return bubble;
  }

  function dropOldQuickReplies() {
    log.querySelectorAll(".msg .quick-replies").forEach((row) => row.remove());
  }

  // Citations grouped by document, in the order of first citation; each keeps its number.
  function citationGroups(citations) {
    const groups = new Map();
    citations.forEach((citation, index) => {
      const key = citation.doc_id || citation.title || `#${index}`;
      if (!groups.has(key)) groups.set(key, {title: citation.title || citation.doc_id || "", cited: []});
      groups.get(key).cited.push([index + 1, (citation.text || "").trim()]);
    });
    return [...groups.values()];
  }

  function showReply(reply) {
    const bubble = element("div", "msg bot");
    bubble.dataset.testid = "reply";
    bubble.dataset.type = reply.reply_type || "";
    if (reply.ticket_id) bubble.dataset.ticket = reply.ticket_id;
    if (reply.reply_type === "emergency") bubble.classList.add("emergency");
    bubble.appendChild(element("p", null, reply.text));
    const citations = Array.isArray(reply.citations) ? reply.citations : [];
    if (citations.length) {
      const sources = element("div", "sources");
      sources.appendChild(element("span", "label", T.sources_label));
      // One entry per document, however many of its passages the answer cites: "[1][3] title",
      // opening to those passages, each under its number.
      citationGroups(citations).forEach((group) => {
        const numbers = group.cited.map(([number]) => `[${number}]`).join("");
        const button = element("button", "citation", `${numbers} ${group.title}`);
        button.type = "button";
        button.dataset.testid = "citation";
        button.setAttribute("aria-expanded", "false");
        const passage = element("div", "passage");
        passage.dataset.testid = "passage";
        group.cited.forEach(([number, text]) => {
          const shown = text || T.no_passage;
          passage.appendChild(element("p", null, group.cited.length > 1 ? `[${number}] ${shown}` : shown));
        });
        passage.hidden = true;
        button.addEventListener("click", () => {
          passage.hidden = !passage.hidden;
          button.setAttribute("aria-expanded", String(!passage.hidden));
        });
        sources.appendChild(button);
        sources.appendChild(passage);
      });
      bubble.appendChild(sources);
    }
    const quick = Array.isArray(reply.quick_replies) ? reply.quick_replies : [];
    if (quick.length) {
      const row = element("div", "quick-replies");
      quick.forEach((text) => row.appendChild(quickButton(text, text)));
      bubble.appendChild(row);
    }
    log.appendChild(bubble);
    if (reply.turn_id && RATED_REPLY_TYPES.includes(reply.reply_type)) offerFeedback(bubble, reply.turn_id);
    scrollDown();
  }

  // ---- feedback: thumbs up / down under each answer, then an optional reason and a few words ---------------

  const RATED_REPLY_TYPES = ["answer", "refusal"];
  // The buttons' words and the reasons, in the page's language (assistant/analytics/feedback.yaml).
  const feedbackWords = fetch(`/api/v1/feedback/wording?lang=${encodeURIComponent(config.lang)}`)
    .then((response) => (response.ok ? response.json() : null)).catch(() => null);

  function feedbackButton(className, label, testid) {
    const button = element("button", `feedback-button ${className}`, label);
    button.type = "button";
    button.dataset.testid = testid;
    button.setAttribute("aria-pressed", "false");
    return button;
  }

  // Thumbs as inline SVG, not emoji: a kiosk without an emoji font draws 👍 as an empty box. The
  // outline is Feather's "thumbs-up" (MIT, feathericons.com); down is the same hand mirrored.
  // It strokes in the button's own colour, so a pressed button's icon turns white with its text.
  const THUMB = "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 "
    + "1-2-2v-7a2 2 0 0 1 2-2h3";

  function thumbButton(direction, label, testid) {
    const button = feedbackButton(direction, "", testid);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", `feedback-icon ${direction}`);
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", THUMB);
    svg.appendChild(path);
    button.appendChild(svg);
    button.appendChild(element("span", "feedback-label", label));
    return button;
  }

  async function offerFeedback(bubble, turnId) {
    const words = await feedbackWords;
    if (!words) return;
    const W = words.text;
    const mine = generation;
    const box = element("div", "feedback");
    box.dataset.testid = "feedback";
    const row = element("div", "feedback-row");
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", W.prompt);
    row.appendChild(element("span", "feedback-prompt", W.prompt));
    const up = thumbButton("up", W.helpful, "feedback-up");
    const down = thumbButton("down", W.not_helpful, "feedback-down");
    row.appendChild(up);
    row.appendChild(down);
    box.appendChild(row);
    const said = element("p", "feedback-status");
    said.setAttribute("role", "status");
    said.hidden = true;
    let details = null;

    async function rate(rating, reason, comment) {
      if (mine !== generation) return false;
      try {
        await call(`/api/v1/turns/${turnId}/feedback`, {
          method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({rating, reason: reason || null, comment: comment || null}),
        });
        said.textContent = W.thanks;
        said.hidden = false;
        return true;
      } catch (error) {
        said.textContent = error instanceof Problem && error.status === 422 ? friendly(error) : W.failed;
        said.hidden = false;
        return false;
      } finally {
        touch();
      }
    }

    function press(chosen) {
      up.setAttribute("aria-pressed", String(chosen === up));
      down.setAttribute("aria-pressed", String(chosen === down));
    }

    up.addEventListener("click", () => {
      press(up);
      if (details) { details.remove(); details = null; }
      rate("up");
    });
    down.addEventListener("click", async () => {
      press(down);
      // Thumbs down counts at once; a reason and a few words, if given, replace it with more detail.
      if (!(await rate("down")) || details) return;
      details = element("div", "feedback-details");
      details.appendChild(element("span", "label", W.why));
      const reasons = element("div", "feedback-reasons");
      let reason = null;
      words.reasons.forEach((entry) => {
        const button = feedbackButton("reason", entry.label, "feedback-reason");
        button.dataset.reason = entry.id;
        button.addEventListener("click", () => {
          reason = reason === entry.id ? null : entry.id;
          reasons.querySelectorAll("button").forEach((b) =>
            b.setAttribute("aria-pressed", String(b.dataset.reason === reason)));
        });
        reasons.appendChild(button);
      });
      details.appendChild(reasons);
      const label = element("label", "feedback-comment-label", W.comment_label);
      const comment = element("input", "feedback-comment");
      comment.type = "text";
      comment.maxLength = 300;
      comment.dataset.testid = "feedback-comment";
      label.appendChild(comment);
      details.appendChild(label);
      const sendDetails = feedbackButton("send-details", W.send, "feedback-send");
      sendDetails.addEventListener("click", async () => {
        if (await rate("down", reason, comment.value.trim()) && details) { details.remove(); details = null; }
      });
      details.appendChild(sendDetails);
      box.insertBefore(details, said);
      scrollDown();
    });

    box.appendChild(said);
    bubble.appendChild(box);
    scrollDown();
  }

  function showWorker(message) {
    const bubble = element("div", "msg bot worker");
    bubble.dataset.testid = "reply";
    bubble.dataset.type = "worker";
    bubble.appendChild(element("span", "label", message.sender ? `${T.worker_label} · ${message.sender}` : T.worker_label));
    bubble.appendChild(element("p", null, message.text));
    log.appendChild(bubble);
    scrollDown();
  }

  function showError(text) {
    const bubble = element("div", "msg bot error");
    bubble.dataset.testid = "error";
    bubble.setAttribute("role", "alert");
    bubble.appendChild(element("p", null, text));
    log.appendChild(bubble);
    scrollDown();
  }

  function setStatus(text) {
    statusLine.textContent = text || "";
    statusLine.hidden = !text;
  }

  function quickButton(label, text) {
    const button = element("button", "quick", label);
    button.type = "button";
    button.dataset.testid = "quick-reply";
    button.dataset.text = text;
    return button;
  }

  // ---- sending ------------------------------------------------------------------------------------

  function newMessageId() {
    if (window.crypto && crypto.randomUUID) return "page-" + crypto.randomUUID();
    return "page-" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  async function send(text) {
    text = (text || "").trim();
    if (!text || busy) return;
    busy = true;
    used = true;
    const mine = generation;
    dropOldQuickReplies();
    showResident(text, false);
    const thinking = showThinking(T.thinking);
    // The same message_id on a retry: the server answers it once.
    const payload = {text, channel: config.mode, message_id: newMessageId()};
    const build = () => {
      if (session) payload.session_id = session.session_id; else delete payload.session_id;
      return {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(payload),
              rebuild: build};
    };
    try {
      await ensureSession();
      const reply = await call("/api/v1/messages", build());
      if (mine === generation) showReply(reply);
    } catch (error) {
      if (mine === generation) showError(friendly(error));
    } finally {
      thinking.remove();
      busy = false;
      touch();
    }
  }

  // ---- the microphone: tap to start, tap again to stop (stops by itself after maxRecordSeconds) ----

  function setMic(state) {
    micButton.classList.toggle("recording", state === "recording");
    micButton.setAttribute("aria-pressed", String(state === "recording"));
    $("mic-label").textContent = state === "recording" ? T.mic_stop : T.mic_start;
    micButton.disabled = state === "hearing";
  }

  async function startRecording() {
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      showError(T.mic_unavailable);
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({audio: true});
    } catch (e) {
      showError(T.mic_unavailable);
      return;
    }
    const chunks = [];
    const mime = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"]
      .find((type) => MediaRecorder.isTypeSupported(type));
    recorder = mime ? new MediaRecorder(stream, {mimeType: mime}) : new MediaRecorder(stream);
    const mine = generation;
    recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
    recorder.addEventListener("stop", () => {
      stream.getTracks().forEach((track) => track.stop());
      clearTimeout(recordTimer);
      recorder = null;
      if (mine !== generation) { setMic("idle"); return; }
      sendVoice(new Blob(chunks, {type: (mime || "audio/webm").split(";")[0]}));
    });
    recorder.start();
    busy = true;
    used = true;
    setMic("recording");
    setStatus(fill(T.mic_recording, {seconds: Math.round(config.maxRecordSeconds)}));
    recordTimer = setTimeout(stopRecording, config.maxRecordSeconds * 1000);
  }

  function stopRecording() {
    if (recorder && recorder.state !== "inactive") recorder.stop();
  }

  async function sendVoice(blob) {
    const mine = generation;
    setMic("hearing");
    setStatus(T.mic_hearing);
    dropOldQuickReplies();
    const thinking = showThinking(T.mic_hearing);
    const build = () => {
      const form = new FormData();
      form.append("audio", blob, blob.type.includes("ogg") ? "voice.ogg" : blob.type.includes("mp4") ? "voice.m4a" : "voice.webm");
      if (session) form.append("session_id", session.session_id);
      form.append("channel", config.mode);
      return {method: "POST", body: form, rebuild: build};
    };
    try {
      await ensureSession();
      const reply = await call("/api/v1/voice", build());
      if (mine === generation) {
        if (reply.transcript) showResident(reply.transcript, true);
        showReply(reply);
      }
    } catch (error) {
      if (mine === generation) showError(friendly(error));
    } finally {
      thinking.remove();
      setStatus("");
      setMic("idle");
      busy = false;
      touch();
    }
  }

  micButton.addEventListener("click", () => {
    if (recorder) stopRecording();
    else if (!busy) startRecording();
  });

  // ---- a worker's replies, without reloading ----------------------------------------------------

  async function poll() {
    if (session && !starting) {
      const mine = generation;
      try {
        const data = await call(`/api/v1/sessions/${encodeURIComponent(session.session_id)}/messages?after=${lastWorkerMessage}`,
                                {method: "GET"});
        if (mine === generation) {
          (data.messages || []).forEach((message) => {
            lastWorkerMessage = Math.max(lastWorkerMessage, message.id);
            showWorker(message);
            touch();
          });
        }
      } catch (e) { /* the next poll tries again */ }
    }
    setTimeout(poll, config.pollMs);
  }

  // ---- reset: "重新开始" and the kiosk's idle timeout ------------------------------------------------

  function touch() {
    lastActivity = Date.now();
    $("idle-warning").hidden = true;
  }

  async function reset() {
    generation += 1;
    const old = session;
    session = null;
    if (recorder) { clearTimeout(recordTimer); recorder.stop(); }
    busy = false;
    used = false;
    question.value = "";
    log.querySelectorAll(".msg:not(.welcome)").forEach((node) => node.remove());
    setStatus("");
    setMic("idle");
    touch();
    if (old) {
      fetch("/api/v1/sessions/end", {method: "POST", headers: {"X-Session-Token": old.session_token}})
        .catch(() => {});
    }
    try { await startSession(); } catch (error) { showError(friendly(error)); }
  }

  if (config.idleSeconds > 0) {
    const warnFor = Math.min(15, Math.max(3, Math.floor(config.idleSeconds / 4)));
    setInterval(() => {
      if (!used || busy) { lastActivity = busy ? Date.now() : lastActivity; return; }
      const left = config.idleSeconds - (Date.now() - lastActivity) / 1000;
      if (left <= 0) {
        reset();
      } else if (left <= warnFor) {
        $("idle-text").textContent = fill(T.idle_warning, {seconds: Math.ceil(left)});
        $("idle-warning").hidden = false;
      }
    }, 500);
    ["pointerdown", "keydown", "input", "touchstart"].forEach((name) =>
      document.addEventListener(name, touch, {passive: true}));
  }

  // ---- wiring -----------------------------------------------------------------------------------

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value;
    if (!text.trim() || busy) return;
    question.value = "";
    send(text);
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.quick");
    if (button && !busy) send(button.dataset.text || button.textContent);
  });

  $("handoff").addEventListener("click", () => send(T.handoff_text));
  const restart = $("restart");
  if (restart) restart.addEventListener("click", reset);
  $("idle-continue").addEventListener("click", touch);

  startSession().catch((error) => showError(friendly(error)));
  setTimeout(poll, config.pollMs);
})();
