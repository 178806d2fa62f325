// The knowledge-base pages: forms are sent in the background and each indexing job's progress is
// polled once a second, so the page stays usable while a document is indexed. Without script the
// same forms post normally and the server redirects.
(function () {
  "use strict";
  const STATES = {queued: "排队中", running: "正在索引", done: "已完成", failed: "失败，知识库没有改变", interrupted: "已中断"};
  const list = document.getElementById("job-list");
  const polling = new Set();

  function showError(box, text) {
    if (!box) { return; }
    box.textContent = text || "";
    box.hidden = !text;
  }

  function jobRow(job) {
    let row = list && list.querySelector(`li[data-job-id="${job.job_id}"]`);
    if (!row && list) {
      const empty = list.querySelector("li.empty");
      if (empty) { empty.remove(); }
      row = document.createElement("li");
      row.dataset.jobId = job.job_id;
      row.innerHTML = '<span class="what"></span><span class="by"></span>' +
        '<progress max="100" value="0" aria-label="进度"></progress><span class="state" role="status"></span>';
      list.prepend(row);
      list.closest("section").hidden = false;
    }
    return row;
  }

  function render(job) {
    const row = jobRow(job);
    if (!row) { return; }
    row.className = `job s-${job.status}`;
    row.dataset.finished = job.finished ? "yes" : "no";
    row.querySelector(".what").textContent = job.summary;
    row.querySelector(".by").textContent = `${job.actor} · ${job.created_at.replace("T", " ")}`;
    row.querySelector("progress").value = job.percent;
    let state = STATES[job.status] || job.status;
    if (job.status === "running") {
      state += job.stage === "indexing" ? "（写入索引）" : `（${job.done}/${job.total} 个片段）`;
    }
    row.querySelector(".state").textContent = state;
    let error = row.querySelector(".error");
    if (job.error) {
      if (!error) { error = document.createElement("span"); error.className = "error"; row.append(error); }
      error.textContent = job.error;
    }
  }

  async function refreshDocuments() {
    const section = document.getElementById("documents");
    if (!section) { window.location.reload(); return; }
    const page = await fetch(window.location.href, {credentials: "same-origin"});
    if (!page.ok) { return; }
    const fresh = new DOMParser().parseFromString(await page.text(), "text/html").getElementById("documents");
    if (fresh) { section.replaceWith(fresh); }
  }

  async function poll(jobId) {
    if (polling.has(jobId)) { return; }
    polling.add(jobId);
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      let job;
      try {
        const response = await fetch(`/admin/kb/jobs/${jobId}`, {headers: {Accept: "application/json"}, credentials: "same-origin"});
        if (!response.ok) { continue; }
        job = (await response.json()).job;
      } catch (err) {
        continue; // the server restarting: keep asking
      }
      render(job);
      if (job.finished) {
        polling.delete(jobId);
        if (job.status === "done") { await refreshDocuments(); }
        return;
      }
    }
  }

  async function send(form, errorBox) {
    showError(errorBox, "");
    const button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    try {
      const response = await fetch(form.action, {method: "POST", body: new FormData(form),
        // The page is in Chinese whatever the browser's language: so are its messages.
        headers: {Accept: "application/json", "Accept-Language": "zh"}, credentials: "same-origin"});
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        showError(errorBox, body.message || `出错了（${response.status}），请稍后再试。`);
        return;
      }
      render(body.job);
      if (form.id === "upload-form") { form.reset(); }
      poll(body.job.job_id);
    } catch (err) {
      showError(errorBox, "网络出错，请检查连接后再试。");
    } finally {
      if (button) { button.disabled = false; }
    }
  }

  const upload = document.getElementById("upload-form");
  if (upload) {
    upload.addEventListener("submit", (event) => { event.preventDefault(); send(upload, document.getElementById("upload-error")); });
  }
  for (const form of document.querySelectorAll("form.job-form")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { return; }
      send(form, document.getElementById("action-error"));
    });
  }
  if (list) {
    for (const row of list.querySelectorAll('li[data-finished="no"]')) { poll(row.dataset.jobId); }
  }
})();
