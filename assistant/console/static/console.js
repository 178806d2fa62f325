// Worker console: live queue (server-sent events), SLA countdowns, ticket actions over the JSON API.
(function () {
  function countdowns() {
    document.querySelectorAll(".sla[data-due]").forEach(function (el) {
      var left = Math.round((Date.parse(el.dataset.due) - Date.now()) / 1000);
      if (left <= 0) { el.textContent = "已超时"; el.classList.add("late"); return; }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = "剩余 " + (h ? h + "小时" : "") + m + "分" + (h ? "" : s + "秒");
    });
  }
  countdowns();
  setInterval(countdowns, 1000);

  // The queue page waits for the server to say the queue changed (server-sent events), then fetches
  // its rows; it polls slowly only while the server cannot listen for changes, or the stream is down.
  var rows = document.getElementById("queue-rows");
  if (rows) {
    var poll = null;
    var refresh = function (flash) {
      fetch("/console/queue-rows" + window.location.search, { credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); }  // logged out: the page sends to the login
          return r.ok ? r.text() : Promise.reject(r.status);
        })
        .then(function (html) {
          rows.innerHTML = html; countdowns();
          if (!flash) return;
          var live = document.getElementById("live"); live.hidden = false;
          setTimeout(function () { live.hidden = true; }, 4000);
        })
        .catch(function () {});
    };
    var pollEvery = function (seconds) {
      if (poll) { clearInterval(poll); poll = null; }
      if (seconds) { poll = setInterval(function () { refresh(false); }, seconds * 1000); }
      var stale = document.getElementById("stale");
      if (stale) { stale.hidden = !(seconds && seconds <= 10); }
    };
    if (window.EventSource) {
      var source = new EventSource("/console/events");
      // Sent on every (re)connection and whenever listening stops or resumes.
      source.addEventListener("mode", function (ev) {
        var mode = JSON.parse(ev.data);
        pollEvery(mode.poll_s || 0);
        refresh(false);
      });
      source.addEventListener("queue", function () { refresh(true); });
      // EventSource reconnects by itself; until it does, the page polls.
      source.addEventListener("error", function () { pollEvery(10); });
    } else {
      pollEvery(10);
    }
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().then(function (data) { if (!r.ok) { throw new Error(data.message || ("错误 " + r.status)); } return data; });
    });
  }
  function showError(err) {
    var box = document.getElementById("action-error");
    if (box) { box.textContent = err.message; box.hidden = false; } else { alert(err.message); }
  }

  var next = document.getElementById("claim-next");
  if (next) next.addEventListener("click", function () {
    post("/api/v1/tickets/claim-next").then(function (data) {
      if (data.ticket) { window.location = "/console/tickets/" + data.ticket.ticket_id; }
      else { alert("队列里没有待认领的工单。"); }
    }).catch(showError);
  });

  var actions = document.querySelector(".actions[data-ticket]");
  if (!actions) return;
  var base = "/api/v1/tickets/" + encodeURIComponent(actions.dataset.ticket) + "/";
  var claim = document.getElementById("claim");
  if (claim) claim.addEventListener("click", function () { post(base + "claim").then(function () { location.reload(); }).catch(showError); });
  actions.querySelectorAll("form[data-action]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var action = (ev.submitter && ev.submitter.dataset.action) || form.dataset.action;
      var body = {};
      new FormData(form).forEach(function (v, k) { if (v !== "") body[k] = v; });
      if (action === "ask") body = { text: body.text };
      post(base + action, body).then(function () { location.reload(); }).catch(showError);
    });
  });
})();
