// The PRIMAL board page: the runs table (decoded from Arrow), charts (figures built by the
// server, drawn with plotly.js), a run page and a sweep page, kept live by server-sent events.
/* global Plotly, Arrow, document, window, fetch, EventSource, location, URLSearchParams */
"use strict";

(function () {
  const view = document.getElementById("view");
  const BOOKKEEPING =
    /^(name|config\.name|preset|quant|home|threads|device|plan\..*|plan|backend|worldSize|distributed|data\.cacheDir|data\.wikitextDir)$/;
  const state = {
    runs: [],
    configKeys: [],
    customKeys: [],
    filter: "",
    sort: { key: "createdAt", desc: true },
    selected: new Set(),
    x: "step",
    smooth: 0,
    bands: false,
    metrics: ["loss", "valLoss", "ghostScale", "flipRate"],
  };
  if (new URLSearchParams(location.search).get("embed") === "1") document.body.classList.add("embed");

  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  };
  const Node = window.Node;
  const fmt = (v, d = 4) =>
    v === null || v === undefined || Number.isNaN(v)
      ? "-"
      : typeof v === "number"
        ? Number.isInteger(v)
          ? String(v)
          : v.toFixed(d)
        : String(v);
  const statusOf = (r) => (r.error && !r.status ? "corrupt" : r.error ? "corrupt" : r.status || "?");
  const badge = (s, title) => el("span", { class: `badge ${s}`, title: title || s, "data-status": s }, s);

  async function getJson(url) {
    const res = await fetch(url);
    return res.json();
  }
  async function getArrow(url) {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${url}: ${res.status}`);
    return Arrow.tableFromIPC(new Uint8Array(await res.arrayBuffer()));
  }

  // ------------------------------------------------------------------ runs table

  async function loadRuns() {
    const t = await getArrow("api/runs");
    const names = t.schema.fields.map((f) => f.name);
    const first = names.indexOf("point") + 1;
    const last = names.indexOf("finalTrainLoss");
    state.runs = t.toArray().map((row) => row.toJSON());
    state.customKeys = names.filter((n) => n.startsWith("custom."));
    // Key config: the fields that differ between runs (and say what was trained).
    state.configKeys = names
      .slice(first, last)
      .filter((k) => !BOOKKEEPING.test(k) && new Set(state.runs.map((r) => JSON.stringify(r[k]))).size > 1);
  }

  function matches(r, token) {
    const m = /^([^=<>~:]+)(=|!=|<=|>=|<|>|~|:)(.*)$/.exec(token);
    if (!m) {
      const hay = `${r.id} ${r.name || ""} ${r.tags || ""} ${statusOf(r)} ${r.sweep || ""}`.toLowerCase();
      return hay.includes(token.toLowerCase());
    }
    const [, key, op, raw] = m;
    if (op === ":" && key === "tag") return (r.tags || "").split(",").includes(raw);
    if (op === ":" || key === "status") return String(key === "status" ? statusOf(r) : (r[key] ?? "")) === raw;
    const v = r[key];
    const n = Number(raw);
    if (op === "~") return v !== null && v !== undefined && String(v).includes(raw);
    if (op === "=" || op === "!=") {
      const eq =
        typeof v === "number" && !Number.isNaN(n)
          ? Math.abs(v - n) <= 1e-6 * Math.max(1, Math.abs(n))
          : String(v ?? "") === raw;
      return op === "=" ? eq : !eq;
    }
    if (typeof v !== "number" || Number.isNaN(n)) return false;
    return op === "<" ? v < n : op === "<=" ? v <= n : op === ">" ? v > n : v >= n;
  }

  function visibleRuns() {
    const tokens = state.filter.split(/\s+/).filter((t) => t !== "");
    const rows = state.runs.filter((r) => tokens.every((t) => matches(r, t)));
    const { key, desc } = state.sort;
    const missing = (v) => v === null || v === undefined || Number.isNaN(v);
    rows.sort((a, b) => {
      const x = key === "status" ? statusOf(a) : a[key];
      const y = key === "status" ? statusOf(b) : b[key];
      if (missing(x) || missing(y)) return missing(x) ? (missing(y) ? 0 : 1) : -1;
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return desc ? -c : c;
    });
    return rows;
  }

  function chartRuns(rows) {
    const chosen = rows.filter((r) => state.selected.has(r.id));
    return (chosen.length ? chosen : rows.slice(0, 20)).filter((r) => statusOf(r) !== "corrupt");
  }

  function runsTableEl(rows) {
    const cols = [
      ["", null],
      ["status", "status"],
      ["run", "name"],
      ["tags", "tags"],
      ["sweep", "sweep"],
      ["preset", "preset"],
      ["quant", "quant"],
      ...state.configKeys.slice(0, 6).map((k) => [k, k]),
      ["step", "step"],
      ["loss", "finalTrainLoss"],
      ["best val", "bestValLoss"],
      ...state.customKeys.map((k) => [k.slice(7), k]),
      ["created", "createdAt"],
    ];
    const head = el(
      "tr",
      {},
      cols.map(([label, key]) =>
        el(
          "th",
          {
            class: key && state.sort.key === key ? `sorted${state.sort.desc ? " desc" : ""}` : "",
            "data-key": key,
            onclick: () => {
              if (!key) return;
              state.sort = { key, desc: state.sort.key === key ? !state.sort.desc : false };
              renderRuns();
            },
          },
          label,
        ),
      ),
    );
    const body = rows.map((r) => {
      const s = statusOf(r);
      return el(
        "tr",
        { "data-run-id": r.id, "data-status": s },
        el(
          "td",
          {},
          el("input", {
            type: "checkbox",
            ...(state.selected.has(r.id) ? { checked: "" } : {}),
            onchange: (e) => {
              if (e.target.checked) state.selected.add(r.id);
              else state.selected.delete(r.id);
              renderCharts();
            },
          }),
        ),
        el("td", { class: "status" }, badge(s, r.error || r.statusReason || s)),
        el("td", {}, el("a", { href: `#/run/${encodeURIComponent(r.id)}`, title: r.id }, r.name || r.id)),
        el(
          "td",
          {},
          (r.tags ? r.tags.split(",") : []).map((t) => el("span", { class: "tag" }, t)),
        ),
        el(
          "td",
          {},
          r.sweep ? el("a", { href: `#/sweep/${encodeURIComponent(r.sweep)}` }, `${r.sweep} #${r.point}`) : "",
        ),
        el("td", {}, r.preset || ""),
        el("td", {}, r.quant || ""),
        state.configKeys.slice(0, 6).map((k) => el("td", { class: typeof r[k] === "number" ? "num" : "" }, fmt(r[k]))),
        el("td", { class: "num" }, fmt(r.step)),
        el("td", { class: "num" }, fmt(r.finalTrainLoss)),
        el("td", { class: "num" }, fmt(r.bestValLoss)),
        state.customKeys.map((k) => el("td", { class: "num" }, fmt(r[k]))),
        el("td", {}, (r.createdAt || "").replace("T", " ").slice(0, 19)),
      );
    });
    return el(
      "div",
      { class: "runs-wrap" },
      el("table", { class: "runs" }, el("thead", {}, head), el("tbody", {}, body)),
    );
  }

  let chartTimer = null;
  function renderRuns() {
    const rows = visibleRuns();
    const wrap = document.getElementById("runs");
    if (!wrap) return;
    wrap.replaceChildren(runsTableEl(rows));
    document.getElementById("count").textContent = `${rows.length} of ${state.runs.length} runs`;
    clearTimeout(chartTimer);
    chartTimer = setTimeout(renderCharts, 100);
  }

  async function drawChart(div, url) {
    const fig = await getJson(url);
    // A metric no selected run has recorded yet (valLoss before the first evaluation) says so
    // instead of drawing empty axes.
    const empty = fig.data.every((t) => !t.y || t.y.length === 0);
    const layout = empty
      ? {
          ...fig.layout,
          xaxis: { visible: false },
          yaxis: { visible: false },
          annotations: [{ text: "no values yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }],
        }
      : fig.layout;
    await Plotly.react(div, fig.data, { ...layout, height: 340, margin: { l: 56, r: 12, t: 40, b: 40 } }, fig.config);
    div.setAttribute("data-empty", String(empty));
    div.setAttribute("data-traces", String(fig.data.length));
  }

  async function renderCharts() {
    const box = document.getElementById("charts");
    if (!box) return;
    const runs = chartRuns(visibleRuns());
    const ids = runs.map((r) => r.id).join(",");
    const metrics = [...state.metrics, ...state.customKeys.filter((k) => !state.metrics.includes(k))];
    // All charts at once: a live update redraws them together.
    await Promise.all(
      metrics.map((m) => {
        let div = box.querySelector(`.chart[data-metric="${m}"]`);
        if (!div) {
          div = el("div", { class: "chart", "data-metric": m });
          box.append(div);
        }
        const q = new URLSearchParams({
          runs: ids,
          metric: m,
          x: state.x,
          smooth: String(state.smooth),
          bands: state.bands ? "1" : "0",
        });
        return drawChart(div, `api/chart?${q}`);
      }),
    );
  }

  function runsView() {
    const controls = el(
      "div",
      { class: "controls" },
      el("input", {
        id: "filter",
        type: "search",
        placeholder: "filter: text, tag:T, status:crashed, knobs.flipRate=0.05, bestValLoss<3",
        value: state.filter,
        oninput: (e) => {
          state.filter = e.target.value;
          renderRuns();
        },
      }),
      el("span", { id: "count", class: "note" }),
      el(
        "label",
        {},
        "x ",
        el(
          "select",
          {
            id: "xaxis",
            onchange: (e) => {
              state.x = e.target.value;
              renderCharts();
            },
          },
          ["step", "tokens", "time"].map((x) =>
            el("option", { value: x, ...(state.x === x ? { selected: "" } : {}) }, x),
          ),
        ),
      ),
      el(
        "label",
        {},
        "smoothing ",
        el("input", {
          id: "smooth",
          type: "range",
          min: "0",
          max: "0.99",
          step: "0.01",
          value: String(state.smooth),
          onchange: (e) => {
            state.smooth = Number(e.target.value);
            renderCharts();
          },
        }),
      ),
      el(
        "label",
        {},
        el("input", {
          id: "bands",
          type: "checkbox",
          ...(state.bands ? { checked: "" } : {}),
          onchange: (e) => {
            state.bands = e.target.checked;
            renderCharts();
          },
        }),
        " seeds as mean ± band",
      ),
    );
    view.replaceChildren(controls, el("div", { id: "runs" }), el("div", { id: "charts", class: "charts" }));
    renderRuns();
  }

  // ------------------------------------------------------------------ run page

  function kvTable(obj, prefix = "", rows = []) {
    for (const [k, v] of Object.entries(obj || {})) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === "object" && !Array.isArray(v)) kvTable(v, key, rows);
      else rows.push(el("tr", {}, el("th", {}, key), el("td", {}, typeof v === "string" ? v : JSON.stringify(v))));
    }
    return rows;
  }

  async function runView(id) {
    const r = await getJson(`api/run/${encodeURIComponent(id)}`);
    if (r.error && !r.corrupt) {
      view.replaceChildren(el("p", { class: "error" }, r.error));
      return;
    }
    if (r.corrupt) {
      view.replaceChildren(
        el("h2", {}, id, " ", badge("corrupt")),
        el("p", { class: "error", id: "run-error" }, r.error),
      );
      return;
    }
    const m = r.meta;
    const sets = r.events.filter((e) => e.kind === "set");
    const parts = [
      el("h2", { id: "run-title" }, m.name || m.id, " ", badge(r.status, r.statusReason || r.status)),
      el(
        "p",
        { class: "note" },
        `${m.id} · created ${m.createdAt} · step ${m.step} · ${m.device}`,
        r.statusReason ? ` · ${r.statusReason}` : "",
        m.error ? el("span", { class: "error" }, ` · ${m.error}`) : "",
      ),
      el(
        "p",
        {},
        r.tags.map((t) => el("span", { class: "tag" }, t)),
      ),
      m.sweep
        ? el(
            "p",
            {},
            "sweep ",
            el("a", { href: `#/sweep/${encodeURIComponent(m.sweep.id)}` }, m.sweep.id),
            ` point ${m.sweep.point} ${JSON.stringify(m.sweep.values)}`,
          )
        : "",
      r.notes.length
        ? el(
            "div",
            {},
            el("h3", {}, "Notes"),
            r.notes.map((n) =>
              el("p", { class: "sample" }, `${n.time}${n.step !== undefined ? ` (step ${n.step})` : ""}: ${n.text}`),
            ),
          )
        : "",
      r.warnings.length ? el("p", { class: "error" }, r.warnings.join("\n")) : "",
      el("div", { id: "charts", class: "charts" }),
      el(
        "div",
        { class: "cols" },
        el("div", {}, el("h3", {}, "Config"), el("table", { class: "kv" }, kvTable(m.config))),
        el(
          "div",
          {},
          el("h3", {}, "Knob changes"),
          sets.length
            ? el(
                "table",
                { class: "kv", id: "knob-events" },
                el("tr", {}, el("th", {}, "step"), el("th", {}, "knob"), el("th", {}, "old"), el("th", {}, "new")),
                sets.map((e) =>
                  el(
                    "tr",
                    {},
                    el("td", {}, e.step),
                    el("td", {}, e.knob),
                    el("td", {}, fmt(e.old)),
                    el("td", {}, fmt(e.new)),
                  ),
                ),
              )
            : el("p", { class: "note" }, "none"),
          el("h3", {}, "Layer statistics (last step)"),
          el("div", { id: "layers" }, el("p", { class: "note" }, "…")),
        ),
      ),
      el("h3", {}, "Salad samples"),
      r.samples.length
        ? el(
            "div",
            { id: "samples" },
            r.samples.map((s) => el("div", { class: "sample" }, `[step ${s.step}] ${s.prompt}`, el("b", {}, s.text))),
          )
        : el("p", { class: "note" }, "none yet"),
    ];
    view.replaceChildren(...parts.filter((p) => p !== ""));
    const box = document.getElementById("charts");
    for (const metric of r.metrics.slice(0, 8)) {
      const div = el("div", { class: "chart", "data-metric": metric });
      box.append(div);
      await drawChart(div, `api/chart?${new URLSearchParams({ runs: id, metric })}`);
    }
    try {
      const t = await getArrow(`api/run/${encodeURIComponent(id)}/layers`);
      const names = t.schema.fields.map((f) => f.name).filter((n) => n !== "step");
      const rows = t.toArray().map((x) => x.toJSON());
      document.getElementById("layers").replaceChildren(
        el(
          "table",
          { class: "layers" },
          el(
            "tr",
            {},
            names.map((n) => el("th", {}, n)),
          ),
          rows.map((row) =>
            el(
              "tr",
              {},
              names.map((n) => el("td", { class: n === "name" ? "" : "num" }, fmt(row[n], 4))),
            ),
          ),
        ),
      );
    } catch {
      document.getElementById("layers").replaceChildren(el("p", { class: "note" }, "no layer statistics yet"));
    }
  }

  // ------------------------------------------------------------------ sweep page

  async function sweepView(id) {
    const s = await getJson(`api/sweep/${encodeURIComponent(id)}`);
    if (s.error) {
      view.replaceChildren(el("p", { class: "error" }, s.error));
      return;
    }
    const swept = s.swept;
    const table = el(
      "table",
      { class: "points" },
      el(
        "tr",
        {},
        el("th", {}, "point"),
        el("th", {}, "status"),
        swept.map((k) => el("th", {}, k)),
        el("th", {}, s.metric),
        el("th", {}, "run"),
      ),
      s.points.map((p) =>
        el(
          "tr",
          { "data-point": p.point },
          el("td", {}, p.point),
          el("td", {}, badge(p.status, p.error || p.status)),
          swept.map((k) => el("td", {}, fmt(p.values[k]))),
          el("td", { class: "num" }, fmt(p.metric)),
          el("td", {}, p.runId ? el("a", { href: `#/run/${encodeURIComponent(p.runId)}` }, p.runId) : "-"),
        ),
      ),
    );
    const charts = el("div", { id: "charts", class: "charts" });
    view.replaceChildren(
      el("h2", {}, `sweep ${s.id}`),
      el("p", { class: "note" }, `${s.points.length} points · metric ${s.metric}`),
      charts,
      table,
    );
    for (const fig of s.figures) {
      const div = el("div", { class: "chart", "data-metric": fig.layout.xaxis?.title?.text || "" });
      charts.append(div);
      await Plotly.react(div, fig.data, { ...fig.layout, height: 340 }, fig.config);
      div.setAttribute("data-traces", String(fig.data.length));
    }
  }

  // ------------------------------------------------------------------ routing and live updates

  let route = { page: "runs" };
  async function render() {
    const h = location.hash.replace(/^#\/?/, "");
    const [page, ...rest] = h.split("/");
    const arg = decodeURIComponent(rest.join("/"));
    route = page === "run" ? { page, id: arg } : page === "sweep" ? { page, id: arg } : { page: "runs" };
    try {
      if (route.page === "run") await runView(route.id);
      else if (route.page === "sweep") await sweepView(route.id);
      else {
        await loadRuns();
        runsView();
      }
    } catch (e) {
      view.replaceChildren(el("p", { class: "error" }, String(e)));
    }
  }

  async function sweepsNav() {
    const ids = await getJson("api/sweeps");
    document
      .getElementById("sweeps")
      .replaceChildren(...ids.map((id) => el("a", { href: `#/sweep/${encodeURIComponent(id)}` }, `sweep ${id}`)));
  }

  let refreshing = false;
  let again = false;
  async function refresh(ids) {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      if (ids.some((i) => i.startsWith("sweeps/"))) await sweepsNav();
      if (route.page === "runs") {
        await loadRuns();
        renderRuns();
      } else if (route.page === "run" && (ids.includes("*") || ids.includes(route.id))) await runView(route.id);
      else if (route.page === "sweep") await sweepView(route.id);
    } finally {
      refreshing = false;
      if (again) {
        again = false;
        void refresh(["*"]);
      }
    }
  }

  const live = document.getElementById("live");
  const events = new EventSource("api/events");
  events.addEventListener("hello", () => live.classList.add("on"));
  events.addEventListener("change", (e) => void refresh(JSON.parse(e.data)));
  events.onerror = () => live.classList.remove("on");

  window.addEventListener("hashchange", render);
  void sweepsNav();
  void render();
})();
