// PRIMAL's extension for the classic Jupyter Notebook (installed and enabled by
// `primal kernel install`): draws application/vnd.plotly.v1+json outputs with the plotly.js
// installed beside this file, served by the Notebook server. Figures then carry only their
// JSON (and a PNG), and draw after a page reload, in a second tab, or when a saved notebook is
// opened again, with or without a running kernel.
//
// The renderer is registered as not safe: in an untrusted notebook the Notebook skips it and
// shows the figure's PNG instead. Plain RequireJS module (the classic Notebook's loader).
define(["require", "base/js/namespace", "notebook/js/outputarea"], function (require, Jupyter, outputarea) {
  "use strict";
  var MIME = "application/vnd.plotly.v1+json";
  var OutputArea = outputarea.OutputArea;
  var plotly = null;

  function loadPlotly() {
    if (!plotly)
      plotly = new Promise(function (resolve, reject) {
        if (window.Plotly && window.Plotly.newPlot) return resolve(window.Plotly);
        // plotly.js 3 defines no AMD module: it sets window.Plotly when loaded.
        require(["./plotly.min"], function (mod) {
          var P = mod && mod.newPlot ? mod : window.Plotly;
          if (P && P.newPlot) resolve(P);
          else reject(new Error("plotly.js did not load"));
        }, reject);
      });
    return plotly;
  }

  function append(json, md, element) {
    var subarea = this.create_output_subarea(md, "output_plotly primal-plotly", MIME);
    var height = json.layout && typeof json.layout.height === "number" ? json.layout.height : 450;
    var div = document.createElement("div");
    div.className = "primal-plot";
    div.style.width = "100%";
    div.style.height = height + "px";
    subarea.append(div);
    element.append(subarea);
    loadPlotly()
      .then(function (Plotly) {
        return Plotly.newPlot(div, json.data, json.layout || {}, json.config || {});
      })
      .catch(function (err) {
        div.style.height = "auto";
        div.textContent = "The figure could not be drawn (" + String(err && err.message ? err.message : err) + ").";
      });
    return subarea;
  }

  // Outputs of a saved notebook may render before this extension loads (the Notebook loads
  // both at once): draw again the trusted ones that hold a figure.
  function redrawLoaded() {
    if (!Jupyter.notebook) return;
    Jupyter.notebook.get_cells().forEach(function (cell) {
      var area = cell.output_area;
      if (!area || !area.trusted) return;
      var has = area.outputs.some(function (o) {
        return o.data && o.data[MIME] !== undefined;
      });
      if (!has) return;
      var outputs = area.toJSON();
      area.clear_output(false, true);
      area.trusted = true;
      area.fromJSON(outputs);
    });
  }

  function load_ipython_extension() {
    if (OutputArea.append_map[MIME]) return;
    OutputArea.prototype.register_mime_type(MIME, append, { safe: false, index: 0 });
    redrawLoaded();
  }

  return { load_ipython_extension: load_ipython_extension };
});
