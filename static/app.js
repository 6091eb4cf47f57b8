// Oncelink's progressive enhancement: CSRF for htmx, dialogs (the link dialog, confirmations) and
// the focus they give back, the countdown and the copy buttons.
// Everything here is optional: without JavaScript the pages still work as plain links and forms.
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });

  // A dialog gives the focus back to what opened it when it closes (Esc, Close or an answer):
  // the Actions button of the menu that held the opener, since the menu closes behind it.
  const openers = new WeakMap();
  let lastTrigger = null;

  function focusHome(element) {
    const menu = element && element.closest ? element.closest("details.menu") : null;
    return menu ? menu.querySelector("summary") : element;
  }

  function openDialog(dialog, opener) {
    openers.set(dialog, focusHome(opener));
    dialog.showModal();
  }

  document.addEventListener("close", function (event) {
    const back = event.target instanceof HTMLDialogElement ? openers.get(event.target) : null;
    if (back && back.isConnected) back.focus();
  }, true); // "close" does not bubble: listen on the way down

  document.addEventListener("htmx:beforeRequest", function (event) {
    lastTrigger = event.detail.elt;
  });

  // Content loaded into a dialog opens it; a menu closes once one of its actions is chosen.
  document.addEventListener("htmx:afterSwap", function (event) {
    const target = event.detail && event.detail.target;
    const dialog = target && target.closest ? target.closest("dialog") : null;
    if (dialog && !dialog.open) openDialog(dialog, lastTrigger);
    tick();
  });

  // hx-confirm asks in the page's own dialog rather than the browser's bare confirm(); its
  // button says what will happen ("Remove", "Revoke"): the label of the button that was pressed.
  document.addEventListener("htmx:confirm", function (event) {
    const dialog = document.getElementById("confirm-dialog");
    if (!event.detail.question || !dialog) return;
    event.preventDefault();
    const trigger = event.detail.triggeringEvent;
    const pressed = (trigger && trigger.submitter) || document.activeElement;
    const label = pressed && pressed.tagName === "BUTTON" ? pressed.textContent.trim() : "";
    dialog.querySelector(".confirm-question").textContent = event.detail.question;
    dialog.querySelector("button[value=confirm]").textContent = label || "Confirm";
    dialog.returnValue = "";
    dialog.addEventListener("close", function () {
      if (dialog.returnValue === "confirm") event.detail.issueRequest(true);
    }, { once: true });
    openDialog(dialog, pressed);
  });
  document.addEventListener("click", function (event) {
    const item = event.target.closest(".menu-items a");
    const menu = item && item.closest("details");
    if (menu) menu.open = false;
  });

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function clock(seconds) {
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    return h ? h + ":" + pad(m) + ":" + pad(s) : pad(m) + ":" + pad(s);
  }

  // How far this machine's clock is behind the server's, measured once per box from the time the
  // server rendered it: a wrong clock on the laptop does not make a live link look expired.
  function serverClockAhead(box) {
    if (box.dataset.clockAhead === undefined) {
      const serverNow = Number(box.dataset.serverNow);
      box.dataset.clockAhead = String(serverNow ? serverNow - Date.now() : 0);
    }
    return Number(box.dataset.clockAhead);
  }

  // Recomputed from the server's absolute expiresAt on every tick, never counted down, so the
  // clock is right after a slow response, a background tab or a laptop waking from sleep.
  function tick() {
    document.querySelectorAll("[data-expires-at]").forEach(function (box) {
      const now = Date.now() + serverClockAhead(box);
      const left = Math.ceil((Date.parse(box.dataset.expiresAt) - now) / 1000);
      const countdown = box.querySelector(".countdown");
      if (left > 0) {
        if (countdown) countdown.textContent = clock(left);
        return;
      }
      if (box.classList.contains("expired")) return;
      box.classList.add("expired");
      box.querySelectorAll("[data-copy]").forEach(function (button) { button.disabled = true; });
      const live = box.querySelector(".live");
      if (live) live.hidden = true;
      const note = box.querySelector(".expired-note");
      if (note) note.hidden = false;
    });
  }
  setInterval(tick, 250);
  document.addEventListener("DOMContentLoaded", tick);

  function copied(button, text) {
    const label = button.textContent;
    button.textContent = text;
    setTimeout(function () { button.textContent = label; }, 1500);
  }

  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button || button.disabled) return;
    const source = document.getElementById(button.dataset.copy);
    const text = source.value !== undefined ? source.value : source.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { copied(button, "Copied"); },
        function () { selectText(source); copied(button, "Press Ctrl+C"); }
      );
    } else {
      selectText(source); // plain http: no clipboard API, so leave the text selected to copy by hand
      copied(button, "Press Ctrl+C");
    }
  });
})();
