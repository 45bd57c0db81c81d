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

// After a call is sent, the next one starts with one key: focus goes to "New call".
document.addEventListener("htmx:afterSwap", function (event) {
  if (event.detail.target && event.detail.target.id === "sent"
      && event.detail.requestConfig && event.detail.requestConfig.verb === "post") {
    var next = document.getElementById("new-call");
    if (next && document.getElementById("sent-status")) { next.focus(); }
  }
});

// A directory match picked for an unrecognised caller fills the caller's fields.
document.addEventListener("click", function (event) {
  var pick = event.target.closest("[data-contact]");
  if (!pick) { return; }
  var contact = JSON.parse(pick.dataset.contact);
  var fields = {"caller-name-input": contact.name, "caller-company": contact.company || "",
                "caller-phone": (contact.phones || [])[0] || "",
                "caller-email": (contact.emails || [])[0] || ""};
  Object.keys(fields).forEach(function (id) {
    var input = document.getElementById(id);
    if (input && fields[id]) { input.value = fields[id]; }
  });
  document.getElementById("subject").focus();
});

// A fragment request refused (403: stale form; 5xx; network): say so, never silently.
document.addEventListener("htmx:responseError", function (event) {
  var flash = document.getElementById("flash");
  if (!flash) { return; }
  var status = event.detail.xhr ? event.detail.xhr.status : 0;
  flash.textContent = status === 403 ? flash.dataset.expired : flash.dataset.failed;
});
document.addEventListener("htmx:sendError", function () {
  var flash = document.getElementById("flash");
  if (flash) { flash.textContent = flash.dataset.failed; }
});

// Booking grid: the slots are one radio group (arrow keys move); Enter books the one picked.
document.addEventListener("keydown", function (event) {
  if (event.key !== "Enter" || !event.target.matches || !event.target.matches("input[name=slot]")) { return; }
  event.preventDefault();
  event.target.checked = true;
  event.target.form.requestSubmit();
});
