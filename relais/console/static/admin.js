// Relais console, admin pages (no build step). The YAML editor stays keyboard
// friendly: Tab indents by two spaces, Escape then Tab leaves the field; the
// caret's line and column are shown; an error's link puts the caret on its line.
(function () {
  var area = document.getElementById("yaml");
  if (!area) { return; }
  var pos = document.getElementById("yaml-pos");
  var escaped = false;
  function where() {
    var before = area.value.slice(0, area.selectionStart).split("\n");
    if (pos) { pos.textContent = before.length + ":" + (before[before.length - 1].length + 1); }
  }
  area.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { escaped = true; return; }
    if (event.key === "Tab" && !event.shiftKey && !escaped) {
      event.preventDefault();
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
    }
    escaped = false;
  });
  ["keyup", "click", "focus"].forEach(function (name) { area.addEventListener(name, where); });
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-line]");
    if (!link) { return; }
    event.preventDefault();
    var line = parseInt(link.dataset.line, 10), column = parseInt(link.dataset.column, 10) || 1;
    var lines = area.value.split("\n"), offset = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) { offset += lines[i].length + 1; }
    var end = offset + (lines[line - 1] || "").length;
    area.focus();
    area.setSelectionRange(Math.min(offset + column - 1, end), end);
    var height = area.scrollHeight / Math.max(lines.length, 1);
    area.scrollTop = Math.max(0, (line - 5) * height);
    where();
  });
})();
