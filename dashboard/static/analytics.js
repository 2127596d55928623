/* Analytics page: draws the charts with uPlot (vendored: static/vendor/uplot/) from the page's
 * own JSON route (/analytics.json, the same figures as GET /api/analytics for the same range)
 * and puts the figures' texts in the cards with textContent. Without this script the cards and
 * tables the server rendered still show every figure.
 */
(function () {
  "use strict";

  var REQUEST_TIMEOUT_MS = 15000;
  var CALLS = "#9bbbe8";
  var QUALIFIED = "#1e7b45";
  var AVERAGE = "#1f5fbf";
  var P90 = "#c0392b";
  var INK = "#1c2430";
  var MUTED = "#5b6675";
  var GRID = "#e6eaef";
  var FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";

  var root = document.getElementById("analytics");
  var charts = [];

  function setFigures(display) {
    var els = document.querySelectorAll("[data-figure]");
    for (var i = 0; i < els.length; i++) {
      var key = els[i].dataset.figure;
      if (Object.prototype.hasOwnProperty.call(display, key)) els[i].textContent = String(display[key]);
    }
  }

  // ---- formats -------------------------------------------------------------------------------
  function durationText(seconds) {
    if (seconds == null) return "–";
    var s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return h ? h + "h " + two(m) + "m" : m + "m " + two(sec) + "s";
  }

  function durationTick(seconds) {
    if (seconds == null) return "";
    if (seconds < 60) return Math.round(seconds) + "s";
    if (seconds < 3600) return Math.round(seconds / 6) / 10 + "m";
    return Math.round(seconds / 360) / 10 + "h";
  }

  // duration ticks at whole minutes (or seconds, hours) a reader counts in
  var DURATION_STEPS = [5, 10, 15, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600];

  function dayEpoch(iso) {  // a local day as UTC midnight: the axis shows it with the UTC zone
    var p = iso.split("-");
    return Date.UTC(Number(p[0]), Number(p[1]) - 1, Number(p[2])) / 1000;
  }

  var dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric", timeZone: "UTC" });

  function dayText(epoch) { return epoch == null ? "" : dayFormat.format(new Date(epoch * 1000)); }

  function countText(n) { return n == null ? "–" : Number(n).toLocaleString(); }

  function integerRange(u, min, max) { return [0, Math.max(4, Math.ceil((max || 0) * 1.12))]; }

  // ---- charts --------------------------------------------------------------------------------
  function widthOf(el) { return Math.max(240, el.clientWidth || el.parentNode.clientWidth || 600); }

  function axis(extra) {
    var base = { stroke: MUTED, font: FONT, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 } };
    for (var k in extra) base[k] = extra[k];
    return base;
  }

  // a legend value: the hovered day's, else (idx null) the whole range's
  function legendValue(format, whole) {
    return function (u, v, sidx, idx) { return idx == null ? whole : format(v); };
  }

  function daysChart(el, days, data) {
    var x = days.map(function (d) { return dayEpoch(d.date); });
    var calls = days.map(function (d) { return d.calls; });
    var qualified = days.map(function (d) { return d.qualified; });
    var bars = uPlot.paths.bars;
    var opts = {
      width: widthOf(el),
      height: 260,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: function (u, min, max) { return [min - 43200, max + 43200]; } },
        y: { range: integerRange }
      },
      axes: [axis({ space: 60 }), axis({ size: 50, values: function (u, splits) { return splits.map(countText); } })],
      series: [
        { label: "Day", value: legendValue(dayText, "all " + days.length + (days.length === 1 ? " day" : " days")) },
        { label: "Calls", fill: CALLS, stroke: CALLS, width: 0, points: { show: false },
          paths: bars({ size: [0.8, 48], align: 0 }), value: legendValue(countText, data.display.calls) },
        { label: "Qualified", fill: QUALIFIED, stroke: QUALIFIED, width: 0, points: { show: false },
          paths: bars({ size: [0.4, 20], align: 0 }), value: legendValue(countText, data.display.qualified) }
      ]
    };
    return new uPlot(opts, [x, calls, qualified], el);
  }

  function durationChart(el, days, data) {
    var x = days.map(function (d) { return dayEpoch(d.date); });
    var average = days.map(function (d) { return d.average_duration_seconds; });
    var p90 = days.map(function (d) { return d.p90_duration_seconds; });
    var opts = {
      width: widthOf(el),
      height: 240,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: function (u, min, max) { return [min - 43200, max + 43200]; } },
        y: { range: function (u, min, max) { return [0, Math.max(60, (max || 0) * 1.12)]; } }
      },
      axes: [
        axis({ space: 60 }),
        axis({ size: 50, incrs: DURATION_STEPS, values: function (u, splits) { return splits.map(durationTick); } })
      ],
      series: [
        { label: "Day", value: legendValue(dayText, "all " + days.length + (days.length === 1 ? " day" : " days")) },
        { label: "Average", stroke: AVERAGE, width: 2, points: { size: 5 },
          value: legendValue(durationText, data.display.average_duration) },
        { label: "p90", stroke: P90, width: 2, dash: [6, 4], points: { size: 5 },
          value: legendValue(durationText, data.display.p90_duration) }
      ]
    };
    return new uPlot(opts, [x, average, p90], el);
  }

  function outcomesChart(el, outcomes) {
    var index = outcomes.map(function (o, i) { return i; });
    var counts = outcomes.map(function (o) { return o.count; });
    var colours = outcomes.map(function (o) { return o.colour; });
    var labels = outcomes.map(function (o) { return o.label; });
    var opts = {
      width: widthOf(el),
      height: 34 * outcomes.length + 40,
      legend: { show: false },
      cursor: { show: false },
      scales: {
        x: { time: false, ori: 1, dir: -1, range: [-0.6, outcomes.length - 0.4] },  // the first on top
        y: { ori: 0, range: function (u, min, max) { return [0, Math.max(4, Math.ceil((max || 0) * 1.3))]; } }
      },
      axes: [
        axis({ side: 3, size: 110, gap: 6, grid: { show: false }, ticks: { show: false }, stroke: INK,
               splits: function () { return index; },
               values: function (u, splits) { return splits.map(function (i) { return labels[i] || ""; }); } }),
        axis({ side: 2, size: 34, values: function (u, splits) { return splits.map(countText); } })
      ],
      series: [
        {},
        { label: "Calls", width: 0, fill: CALLS, points: { show: false },
          paths: uPlot.paths.bars({ size: [0.7, 26], disp: { fill: { unit: 3, values: function () { return colours; } } } }) }
      ],
      hooks: {
        draw: [function (u) {  // each bar's count at its end
          var ctx = u.ctx;
          ctx.save();
          ctx.font = "600 " + Math.round(12 * uPlot.pxRatio) + "px system-ui, sans-serif";
          ctx.fillStyle = INK;
          ctx.textBaseline = "middle";
          ctx.textAlign = "left";  // uPlot leaves its last axis's alignment set
          counts.forEach(function (n, i) {
            var left = u.valToPos(n, "y", true) + 8 * uPlot.pxRatio;
            var top = u.valToPos(i, "x", true);
            ctx.fillText(countText(n) + "  (" + outcomes[i].share_display + ")", left, top);
          });
          ctx.restore();
        }]
      }
    };
    return new uPlot(opts, [index, counts], el);
  }

  function draw(data) {
    setFigures(data.display);
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    var days = document.getElementById("chart-days");
    var outcomes = document.getElementById("chart-outcomes");
    var duration = document.getElementById("chart-duration");
    var any = data.page.totals.calls > 0;
    [days, outcomes, duration].forEach(function (el) { el.hidden = !any; });
    if (!any) { root.dataset.drawn = "0"; return; }
    charts.push(daysChart(days, data.page.per_day, data));
    charts.push(outcomesChart(outcomes, data.outcomes));
    document.getElementById("outcomes-details").open = false;  // the chart says it; the table stays a click away
    charts.push(durationChart(duration, data.page.per_day, data));
    if (window.ResizeObserver) {
      var observer = new ResizeObserver(function () {
        charts.forEach(function (c) {
          var width = widthOf(c.root.parentNode);
          if (Math.abs(width - c.width) > 2) c.setSize({ width: width, height: c.height });
        });
      });
      charts.forEach(function (c) { observer.observe(c.root.parentNode); });
    }
    root.dataset.drawn = String(charts.length);
  }

  function failed() {
    document.getElementById("charts-error").hidden = false;
    root.dataset.drawn = "failed";
  }

  function start() {
    if (!root || typeof uPlot === "undefined") return;
    var controller = window.AbortController ? new AbortController() : null;
    var abort = setTimeout(function () { if (controller) controller.abort(); }, REQUEST_TIMEOUT_MS);
    fetch(root.dataset.url, {
      credentials: "same-origin", cache: "no-store", signal: controller ? controller.signal : undefined,
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (response.status === 401) { window.location.reload(); return null; }  // signed out: the login page
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (data) {
      if (data) draw(data);
    }).catch(failed).then(function () { clearTimeout(abort); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
