// keyledger dashboard: small enhancements only; every form works without this file.
(function () {
  "use strict";
  var leaving = document.body && document.body.getAttribute("data-confirm-leave");
  function warn(event) {
    event.preventDefault();
    event.returnValue = leaving;
    return leaving;
  }
  if (leaving) {
    window.addEventListener("beforeunload", warn);
    document.querySelectorAll("[data-leave-ok]").forEach(function (link) {
      link.addEventListener("click", function () { window.removeEventListener("beforeunload", warn); });
    });
  }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      var status = document.getElementById("copy-status");
      if (!field) { return; }
      field.focus();
      field.select();
      function done(ok) {
        if (status) { status.textContent = ok ? "Copied to the clipboard." : "Press Ctrl+C (⌘C) to copy the selected secret."; }
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(function () { done(true); }, function () { done(document.execCommand("copy")); });
      } else {
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        done(ok);
      }
    });
  });
})();
