// The analytics page's charts (Chart.js, served from /admin-static; no CDN). The numbers come
// from the page itself (#analytics-data), the same ones its tables and CSV exports show.
(function () {
  "use strict";
  if (typeof Chart === "undefined") return;
  const data = JSON.parse(document.getElementById("analytics-data").textContent);
  const labels = data.labels;
  const palette = ["#1f5f99", "#f29900", "#2e7d32", "#d93025", "#7b1fa2", "#00838f", "#6b7785", "#c2185b"];
  const colour = (i) => palette[i % palette.length];

  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    config.options = Object.assign({responsive: true, maintainAspectRatio: false, animation: false}, config.options || {});
    new Chart(canvas, config);
  }

  // Questions per day, one stacked bar per channel (the centres summed).
  const days = [...new Set(data.questions_per_day.map((r) => r.day))].sort();
  const channels = [...new Set(data.questions_per_day.map((r) => r.channel))].sort();
  draw("chart-questions", {
    type: "bar",
    data: {
      labels: days,
      datasets: channels.map((channel, i) => ({
        label: labels.channels[channel] || channel,
        backgroundColor: colour(i),
        data: days.map((day) => data.questions_per_day
          .filter((r) => r.day === day && r.channel === channel).reduce((sum, r) => sum + r.questions, 0)),
      })),
    },
    options: {scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true}}},
  });

  draw("chart-outcomes", {
    type: "doughnut",
    data: {
      labels: data.outcomes.map((r) => labels.reply_types[r.reply_type] || r.reply_type),
      datasets: [{data: data.outcomes.map((r) => r.replies), backgroundColor: data.outcomes.map((_, i) => colour(i))}],
    },
  });

  draw("chart-intents", {
    type: "bar",
    data: {
      labels: data.intents.map((r) => r.intent),
      datasets: [{label: "提问数", data: data.intents.map((r) => r.questions), backgroundColor: colour(0)}],
    },
    options: {indexAxis: "y", plugins: {legend: {display: false}}},
  });

  const votes = {"有帮助": 0, "没帮助": 0};
  data.feedback.forEach((r) => { votes[r.rating] = (votes[r.rating] || 0) + r.times; });
  draw("chart-feedback", {
    type: "doughnut",
    data: {
      labels: ["有帮助", "没帮助"],
      datasets: [{data: [votes["有帮助"], votes["没帮助"]], backgroundColor: ["#2e7d32", "#d93025"]}],
    },
  });
})();
