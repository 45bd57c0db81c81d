// Relais console keyboard shortcuts (no build step). Ctrl/Cmd+Enter: send the call;
// Alt+N: new call; Alt+T: call type; Alt+K: client search. Visible focus is CSS.
document.addEventListener("keydown", function (event) {
  var form = document.getElementById("call-form");
  if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && form) {
    event.preventDefault();
    form.requestSubmit();
    return;
  }
  if (!event.altKey) { return; }
  var key = event.key.toLowerCase();
  var target = null;
  if (key === "n") { target = document.getElementById("new-call"); if (target) { target.click(); } }
  else if (key === "t") { target = document.getElementById("call_type"); }
  else if (key === "k") { target = document.getElementById("q") || document.querySelector("nav a[href='/desk']"); }
  if (target) { event.preventDefault(); if (key !== "n") { target.focus(); if (key === "k" && target.tagName === "A") { target.click(); } } }
});
