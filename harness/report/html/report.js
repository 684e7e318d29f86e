// sockcap report charts. Reads the JSON block #sockcap-data (schema sockcap.html-data/1,
// written by sockcap's report/html.rs) and draws SVG charts into the page's placeholders.
// Hand-written, no dependencies, nothing fetched. When every chart is drawn it sets
// the attribute data-sockcap-ready (the number of charts) on the body element; on failure it sets
// data-sockcap-error and shows the message at the top of the page.
(function () {
  "use strict";

  const SVGNS = "http://www.w3.org/2000/svg";
  const STATE_COLORS = {
    established: "#2da44e", syn_sent: "#57606a", syn_recv: "#bf8700", fin_wait1: "#0969da",
    fin_wait2: "#8250df", time_wait: "#fb8500", close: "#6e7781", close_wait: "#cf222e",
    last_ack: "#a40e26", listen: "#1f2328", closing: "#d4a72c",
  };
  const LATENCY_COLORS = {
    connect: "#0969da", tls: "#1a7f37", handshake: "#fb8500", close: "#8250df",
    suback: "#1b7c83", puback: "#bf3989", pubcomp: "#9a6700", delivery: "#2da44e",
  };
  const ERROR_COLORS = ["#cf222e", "#fb8500", "#8250df", "#0969da", "#bf8700", "#57606a",
    "#a40e26", "#1b7c83", "#d4a72c", "#6e7781", "#2da44e", "#e85aad", "#953800"];
  const MAX_DOTS = 600;
  let data = null;
  let drawn = 0;

  // ---- DOM helpers -------------------------------------------------------------
  function svg(parent, name, attrs, text) {
    const e = document.createElementNS(SVGNS, name);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function html(parent, tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function tooltip(el, text) { svg(el, "title", {}, text); }

  // ---- numbers -----------------------------------------------------------------
  function trim(v) { return String(+(+v).toFixed(2)); }
  function fmtCount(v) { return Math.round(v).toLocaleString("en-US"); }
  function fmtTick(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return trim(v / 1e6) + "M";
    if (a >= 1e3) return trim(v / 1e3) + "k";
    return trim(v);
  }
  function fmtUs(us) {
    if (us < 1000) return Math.round(us) + " µs";
    if (us < 1e6) return trim(us / 1e3) + " ms";
    return trim(us / 1e6) + " s";
  }
  function fmtSec(ms) { return trim(ms / 1000) + " s"; }
  function fmtPct(q) {
    const p = q * 100;
    if (p >= 99.99) return String(+p.toFixed(4)) + "%";
    return String(+p.toFixed(2)) + "%";
  }

  // Ticks from 0 to at least `max`: about `n` steps of 1, 2, 2.5 or 5 × 10^k.
  function linearTicks(max, n, integer) {
    if (!(max > 0)) max = 1;
    const raw = max / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const choices = integer && mag < 10 ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
    let step = choices.find((c) => c * mag >= raw) * mag;
    if (integer) step = Math.max(1, Math.round(step));
    const top = Math.ceil(max / step - 1e-9) * step;
    const ticks = [];
    for (let i = 0; i * step <= top * (1 + 1e-9); i++) ticks.push(+(i * step).toPrecision(12));
    return { top, ticks };
  }

  // Phase name that fits `width` pixels (about 6.4 px a character), or its number, or nothing.
  function fit(label, short, width) {
    if (label.length * 6.4 + 8 <= width) return label;
    if (short.length * 6.4 + 6 <= width) return short;
    return "";
  }

  // ---- the generic chart -------------------------------------------------------
  // cfg: { title, w, h, legend: [{name, color}], bands: [{from, to, label, short, title}],
  //        x: {min, max, ticks: [{v, label}], label, grid}, y: {max, ticks: [{v, label}], label},
  //        series: [{color, pts: [[x, y] | null], dots: [[x, y, tooltip]], dash}],
  //        markers: [{x, label, color, title, dot: [y, tooltip]}] }
  function plot(host, cfg) {
    const fig = html(host, "figure", "chart");
    html(fig, "figcaption", null, cfg.title);
    const legend = html(fig, "div", "legend");
    for (const item of cfg.legend) {
      const s = html(legend, "span");
      html(s, "i").style.background = item.color;
      s.appendChild(document.createTextNode(item.name));
    }
    const W = cfg.w, H = cfg.h;
    const M = { l: 66, r: cfg.right || 16, t: cfg.bands ? 24 : 12, b: 44 };
    const pw = W - M.l - M.r, ph = H - M.t - M.b;
    const root = svg(fig, "svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "aria-label": cfg.title });
    const sx = (v) => M.l + ((v - cfg.x.min) / (cfg.x.max - cfg.x.min || 1)) * pw;
    const sy = (v) => M.t + ph - (v / (cfg.y.max || 1)) * ph;

    (cfg.bands || []).forEach((b, i) => {
      const x0 = sx(b.from), x1 = Math.max(sx(b.to), x0);
      if (i % 2 === 1) svg(root, "rect", { class: "band", x: x0, y: M.t, width: x1 - x0, height: ph });
      svg(root, "line", { class: "boundary", x1: x0, x2: x0, y1: M.t - 20, y2: M.t + ph });
      const text = fit(b.label, b.short, x1 - x0);
      if (text) tooltip(svg(root, "text", { class: "phase", x: (x0 + x1) / 2, y: M.t - 8, "text-anchor": "middle" }, text), b.title);
    });
    if (cfg.bands && cfg.bands.length) {
      const xe = sx(cfg.bands[cfg.bands.length - 1].to);
      svg(root, "line", { class: "boundary", x1: xe, x2: xe, y1: M.t - 20, y2: M.t + ph });
    }
    for (const t of cfg.y.ticks) {
      const y = sy(t.v);
      if (t.v > 0) svg(root, "line", { class: "grid", x1: M.l, x2: M.l + pw, y1: y, y2: y });
      svg(root, "text", { class: "tick", x: M.l - 7, y: y + 4, "text-anchor": "end" }, t.label);
    }
    for (const t of cfg.x.ticks) {
      const x = sx(t.v);
      if (cfg.x.grid && t.v > cfg.x.min) svg(root, "line", { class: "grid", x1: x, x2: x, y1: M.t, y2: M.t + ph });
      svg(root, "line", { class: "axis", x1: x, x2: x, y1: M.t + ph, y2: M.t + ph + 4 });
      svg(root, "text", { class: "tick", x: x, y: M.t + ph + 17, "text-anchor": "middle" }, t.label);
    }
    svg(root, "line", { class: "axis", x1: M.l, x2: M.l, y1: M.t, y2: M.t + ph });
    svg(root, "line", { class: "axis", x1: M.l, x2: M.l + pw, y1: M.t + ph, y2: M.t + ph });
    svg(root, "text", { class: "label", x: M.l + pw / 2, y: H - 6, "text-anchor": "middle" }, cfg.x.label);
    svg(root, "text", { class: "label", transform: `translate(15 ${M.t + ph / 2}) rotate(-90)`, "text-anchor": "middle" }, cfg.y.label);

    for (const s of cfg.series) {
      let d = "", pen = false;
      for (const p of s.pts) {
        if (!p) { pen = false; continue; }
        d += (pen ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1);
        pen = true;
      }
      const path = svg(root, "path", { class: "series", d: d, stroke: s.color });
      if (s.dash) path.setAttribute("stroke-dasharray", s.dash);
      const dots = s.dots || [];
      if (dots.length <= MAX_DOTS) {
        for (const p of dots) tooltip(svg(root, "circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.8, fill: s.color }), p[2]);
      }
    }
    let lastLabelEnd = -Infinity;
    for (const m of cfg.markers || []) {
      const x = sx(m.x);
      tooltip(svg(root, "line", { class: "marker", x1: x, x2: x, y1: M.t, y2: M.t + ph, stroke: m.color }), m.title);
      // Labels side by side would overlap: a later one goes one line lower.
      const y = M.t + 12 + (x < lastLabelEnd ? 14 : 0);
      const label = svg(root, "text", { class: "marker-label", x: x + 4, y: y, fill: m.color }, m.label);
      tooltip(label, m.title);
      lastLabelEnd = x + 4 + m.label.length * 6.2;
      if (m.dot) {
        const c = svg(root, "rect", { x: x - 4, y: sy(m.dot[0]) - 4, width: 8, height: 8, fill: m.color, transform: `rotate(45 ${x} ${sy(m.dot[0])})` });
        tooltip(c, m.dot[1]);
      }
    }
    drawn++;
    return root;
  }

  // Where the ephemeral ports ran out (and came back), for the time-series charts.
  // The phases' events (exec, fault, netem) where they started: a restart's drop and
  // climb back show on the census right after its marker.
  function eventMarkers() {
    const out = [];
    for (const p of data.phases) {
      for (const e of p.events || []) {
        const how = e.ok ? "ok" : `failed: ${e.error}`;
        out.push({ x: e.started_ms / 1000, label: e.ok ? e.kind : `${e.kind} failed`, color: e.ok ? "#9a6700" : "#cf222e",
          title: `${p.name}: ${e.kind} \`${e.what}\` at ${fmtSec(e.started_ms)}, took ${fmtSec(e.duration_ms)}: ${how}` });
      }
    }
    return out;
  }

  function exhaustionMarkers(withDots) {
    const out = [];
    for (const p of data.phases) {
      const e = p.exhaustion;
      if (!e) continue;
      const at = p.started_ms + e.after_ms;
      const title = `${p.name}: ports toward the target ran out at ${fmtSec(at)}, after ${fmtCount(e.after_connections)} connections; ` +
        `${fmtCount(e.time_wait)} client sockets in TIME_WAIT; ${fmtCount(e.failed)} connects failed with EADDRNOTAVAIL`;
      out.push({ x: at / 1000, label: "ports ran out", color: "#cf222e", title: title,
        dot: withDots ? [e.time_wait, `TIME_WAIT ${fmtCount(e.time_wait)} when the ports ran out (${fmtSec(at)})`] : null });
      if (e.recovered_after_ms !== null && e.recovered_after_ms !== undefined) {
        const back = at + e.recovered_after_ms;
        out.push({ x: back / 1000, label: "ports back", color: "#1a7f37",
          title: `${p.name}: a connect succeeded again at ${fmtSec(back)}, ${fmtSec(e.recovered_after_ms)} after the ports ran out` });
      }
    }
    return out;
  }

  // ---- time series ---------------------------------------------------------------
  function timeline(p) { return p.samples.concat([p.end]); }
  // The census series: an end census that failed is no reading (its zeros are not drawn).
  function censusTimeline(p) { return p.end_census_unobserved ? p.samples : timeline(p); }
  function runEndMs() {
    let end = data.duration_ms;
    for (const p of data.phases) end = Math.max(end, p.started_ms + p.duration_ms);
    return Math.max(end, 1);
  }
  function timeAxis() {
    const maxS = runEndMs() / 1000;
    const t = linearTicks(maxS, 10, false);
    return { min: 0, max: maxS, ticks: t.ticks.filter((v) => v <= maxS * (1 + 1e-9)).map((v) => ({ v: v, label: trim(v) })), label: "time since start (s)" };
  }
  function phaseBands() {
    return data.phases.map((p, i) => ({
      from: p.started_ms / 1000,
      to: (p.started_ms + p.duration_ms) / 1000,
      label: `${i + 1}. ${p.name}`,
      short: String(i + 1),
      title: `phase ${i + 1}: ${p.name} (${p.kind}), ${fmtSec(p.started_ms)} – ${fmtSec(p.started_ms + p.duration_ms)}`,
    }));
  }
  function countAxis(max, label) {
    const t = linearTicks(max * 1.05, 6, true);
    return { max: t.top, ticks: t.ticks.map((v) => ({ v: v, label: fmtTick(v) })), label: label };
  }

  function censusChart(host, side, title) {
    const used = data.states.filter((s) => data.phases.some((p) => censusTimeline(p).some((c) => c[side] && c[side][s] > 0)));
    if (!used.length) {
      html(host, "p", "hint", `${title}: no sockets counted.`);
      return;
    }
    const series = used.map((s) => ({ key: s, color: STATE_COLORS[s] || "#000", pts: [], dots: [] }));
    let max = 0;
    for (const p of data.phases) {
      for (const c of censusTimeline(p)) {
        if (!c[side]) continue;
        const x = c.t_ms / 1000;
        for (const s of series) {
          const v = c[side][s.key] || 0;
          max = Math.max(max, v);
          s.pts.push([x, v]);
          s.dots.push([x, v, `${s.key.toUpperCase()} ${fmtCount(v)} at ${fmtSec(c.t_ms)} (${p.name}${c === p.end ? ", end of phase" : ""})`]);
        }
      }
    }
    plot(host, {
      title: title, w: 1140, h: 330,
      legend: series.map((s) => ({ name: `${s.key.toUpperCase()} (peak ${fmtCount(Math.max(...s.pts.map((q) => q[1])))})`, color: s.color })),
      bands: phaseBands(), x: timeAxis(), y: countAxis(max, "sockets"), series: series,
      markers: exhaustionMarkers(side === "client").concat(eventMarkers()),
    });
  }

  function rateChart(host) {
    const defs = [
      { kind: "connect", name: "connects/s", color: "#0969da", key: "succeeded_per_s" },
      { kind: "close", name: "closes/s", color: "#8250df", key: "succeeded_per_s" },
      { kind: "churn", name: "churn cycles/s", color: "#1b7c83", key: "succeeded_per_s" },
      { kind: null, name: "failures/s", color: "#cf222e", key: "failed_per_s" },
    ];
    const series = [];
    let max = 0;
    for (const def of defs) {
      const s = { name: def.name, color: def.color, pts: [], dots: [] };
      let any = false;
      for (const p of data.phases) {
        if (def.kind && p.kind !== def.kind) continue;
        for (const r of p.rate) {
          const v = r[def.key];
          any = any || v > 0 || def.kind !== null;
          max = Math.max(max, v);
          s.pts.push([r.from_ms / 1000, v], [r.to_ms / 1000, v]);
          s.dots.push([(r.from_ms + r.to_ms) / 2000, v, `${def.name} ${fmtCount(v)} from ${fmtSec(r.from_ms)} to ${fmtSec(r.to_ms)} (${p.name})`]);
        }
        s.pts.push(null);
      }
      if (any && s.dots.length) series.push(s);
    }
    // Per 100 ms: lost connections coming back (the storm's climb, finer than the
    // census), and messages out (published) and in (delivered).
    const per100 = [
      { key: "reconnects_100ms", name: "reconnects/s (per 100 ms)", color: "#bf8700", what: "back" },
      { key: "published_100ms", name: "messages out/s (published)", color: "#6f42c1", what: "published" },
      { key: "delivered_100ms", name: "messages in/s (delivered)", color: "#0550ae", what: "delivered" },
    ];
    for (const def of per100) {
      const s = { name: def.name, color: def.color, pts: [], dots: [] };
      for (const p of data.phases) {
        (p[def.key] || []).forEach((n, i) => {
          const from = p.started_ms + i * 100, v = n * 10;
          max = Math.max(max, v);
          s.pts.push([from / 1000, v], [(from + 100) / 1000, v]);
          if (n > 0) s.dots.push([(from + 50) / 1000, v, `${fmtCount(n)} ${def.what} from ${fmtSec(from)} to ${fmtSec(from + 100)} (${p.name})`]);
        });
        s.pts.push(null);
      }
      if (s.dots.length) series.push(s);
    }
    if (!series.length) {
      html(host, "p", "hint", "No phase connected or closed anything.");
      return;
    }
    plot(host, {
      title: "Connect and close rate", w: 560, h: 300,
      legend: series.map((s) => ({ name: s.name, color: s.color })),
      bands: phaseBands(), x: timeAxis(), y: countAxis(max, "per second"), series: series,
      markers: exhaustionMarkers(false),
    });
  }

  function openChart(host) {
    const s = { color: "#2da44e", pts: [], dots: [] };
    let max = 0;
    if (data.phases.length) s.pts.push([data.phases[0].started_ms / 1000, 0]);
    for (const p of data.phases) {
      for (const c of timeline(p)) {
        max = Math.max(max, c.open);
        s.pts.push([c.t_ms / 1000, c.open]);
        s.dots.push([c.t_ms / 1000, c.open, `${fmtCount(c.open)} open at ${fmtSec(c.t_ms)} (${p.name})`]);
      }
    }
    plot(host, {
      title: "Open connections", w: 560, h: 300,
      legend: [{ name: "connections sockcap holds open", color: s.color }],
      bands: phaseBands(), x: timeAxis(), y: countAxis(max, "connections"), series: [s],
    });
  }

  // ---- latency percentile plots (HdrHistogram style) -----------------------------
  function percentileLabel(k) {
    if (k === 0) return "0%";
    if (k === 1) return "90%";
    return "99" + (k > 2 ? "." + "9".repeat(k - 2) : "") + "%";
  }
  function latencyCharts(host) {
    data.phases.forEach((p, i) => {
      if (!p.latency.length) return;
      const X = (q) => Math.log10(1 / (1 - q));
      let maxX = 2, maxUs = 1;
      for (const c of p.latency) {
        for (const pt of c.points) { maxX = Math.max(maxX, X(pt[0])); maxUs = Math.max(maxUs, pt[1]); }
      }
      const decades = Math.ceil(maxX - 1e-9);
      const [unit, div] = maxUs < 2000 ? ["µs", 1] : maxUs < 2e6 ? ["ms", 1e3] : ["s", 1e6];
      const yt = linearTicks((maxUs / div) * 1.05, 6, false);
      const xticks = [];
      for (let k = 0; k <= decades; k++) xticks.push({ v: k, label: percentileLabel(k) });
      const series = p.latency.map((c) => ({
        color: LATENCY_COLORS[c.name] || "#000",
        pts: c.points.map((pt) => [X(pt[0]), pt[1] / div]),
        dots: c.points.map((pt) => [X(pt[0]), pt[1] / div, `${c.name} ${fmtPct(pt[0])}: ${fmtUs(pt[1])}`]),
      }));
      plot(host, {
        title: `${i + 1}. ${p.name}${p.name === p.kind ? "" : " (" + p.kind + ")"}: latency by percentile`, w: 560, h: 320, right: 30,
        legend: p.latency.map((c) => ({
          name: `${c.name}: ${fmtCount(c.count)} samples, p50 ${fmtUs(c.p50_us)}, p99 ${fmtUs(c.p99_us)}, max ${fmtUs(c.max_us)}${c.error ? " (percentiles only: " + c.error + ")" : ""}`,
          color: LATENCY_COLORS[c.name] || "#000",
        })),
        x: { min: 0, max: decades, ticks: xticks, label: "percentile (log scale of 1/(1−p))", grid: true },
        y: { max: yt.top, ticks: yt.ticks.map((v) => ({ v: v, label: trim(v) })), label: `latency (${unit})` },
        series: series,
      });
    });
  }

  // ---- errors by kind: one stacked bar per phase ---------------------------------
  function errorChart(host) {
    const kinds = [];
    for (const p of data.phases) for (const k of Object.keys(p.errors)) if (!kinds.includes(k)) kinds.push(k);
    if (!kinds.length) return;
    const color = (k) => ERROR_COLORS[kinds.indexOf(k) % ERROR_COLORS.length];
    const fig = html(host, "figure", "chart");
    html(fig, "figcaption", null, "Failures by kind, per phase");
    const legend = html(fig, "div", "legend");
    for (const k of kinds) {
      const s = html(legend, "span");
      html(s, "i").style.background = color(k);
      s.appendChild(document.createTextNode(k));
    }
    const rowH = 26, W = 1140, M = { l: 170, r: 70, t: 8, b: 40 };
    const H = M.t + M.b + rowH * data.phases.length;
    const pw = W - M.l - M.r;
    const totals = data.phases.map((p) => Object.values(p.errors).reduce((a, b) => a + b, 0));
    const t = linearTicks(Math.max(...totals), 8, true);
    const sx = (v) => M.l + (v / t.top) * pw;
    const root = svg(fig, "svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "aria-label": "failures by kind per phase" });
    for (const v of t.ticks) {
      const x = sx(v);
      svg(root, "line", { class: v > 0 ? "grid" : "axis", x1: x, x2: x, y1: M.t, y2: H - M.b });
      svg(root, "text", { class: "tick", x: x, y: H - M.b + 16, "text-anchor": "middle" }, fmtTick(v));
    }
    svg(root, "text", { class: "label", x: M.l + pw / 2, y: H - 6, "text-anchor": "middle" }, "failures");
    data.phases.forEach((p, i) => {
      const y = M.t + i * rowH;
      const name = `${i + 1}. ${p.name}`;
      svg(root, "text", { class: "tick", x: M.l - 8, y: y + rowH / 2 + 4, "text-anchor": "end" }, name.length > 24 ? name.slice(0, 23) + "…" : name);
      let at = 0;
      for (const k of kinds) {
        const n = p.errors[k] || 0;
        if (!n) continue;
        const r = svg(root, "rect", { x: sx(at), y: y + 4, width: Math.max(1, sx(at + n) - sx(at)), height: rowH - 8, fill: color(k) });
        tooltip(r, `${k}: ${fmtCount(n)} in ${p.name}`);
        at += n;
      }
      svg(root, "text", { class: "tick", x: sx(at) + 6, y: y + rowH / 2 + 4 }, fmtCount(totals[i]));
    });
    drawn++;
  }

  // ---- main ----------------------------------------------------------------------
  function fail(err) {
    const message = String((err && err.message) || err);
    if (document.body.hasAttribute("data-sockcap-error")) return;
    document.body.setAttribute("data-sockcap-error", message);
    const banner = document.createElement("p");
    banner.className = "banner error";
    banner.textContent = "The charts could not be drawn: " + message;
    const main = document.querySelector("main") || document.body;
    main.insertBefore(banner, main.firstChild);
  }

  function main() {
    data = JSON.parse(document.getElementById("sockcap-data").textContent);
    const at = (id) => document.getElementById(id);
    if (at("chart-client-states")) censusChart(at("chart-client-states"), "client", "Client sockets by state (remote end = the target)");
    if (at("chart-server-states")) censusChart(at("chart-server-states"), "server", "Server sockets by state (local port = the target's)");
    if (at("chart-rate")) rateChart(at("chart-rate"));
    if (at("chart-open")) openChart(at("chart-open"));
    if (at("chart-latency")) latencyCharts(at("chart-latency"));
    if (at("chart-errors")) errorChart(at("chart-errors"));
    document.body.setAttribute("data-sockcap-ready", String(drawn));
  }

  window.addEventListener("error", (ev) => fail(ev.error || ev.message));
  try {
    main();
  } catch (err) {
    fail(err);
  }
})();
