// Plugboard's one script, served from /static/app.js (the CSP allows no
// other). Pages work without it; it only saves a round trip: a destructive
// form (data-confirm) asks in a dialog here instead of on a confirmation
// page, and adds the `confirm=yes` the server requires.
(function () {
  'use strict';

  function ask(question, button, onYes) {
    var dialog = document.createElement('dialog');
    dialog.className = 'confirm-dialog';
    dialog.setAttribute('data-testid', 'confirm-dialog');
    var text = document.createElement('p');
    text.textContent = question;
    var row = document.createElement('div');
    row.className = 'actions';
    var yes = document.createElement('button');
    yes.type = 'button';
    yes.className = 'danger solid';
    yes.textContent = button;
    var no = document.createElement('button');
    no.type = 'button';
    no.className = 'secondary';
    no.textContent = 'Cancel';
    row.append(yes, no);
    dialog.append(text, row);
    document.body.append(dialog);
    dialog.addEventListener('close', function () {
      dialog.remove();
    });
    no.addEventListener('click', function () {
      dialog.close();
    });
    yes.addEventListener('click', function () {
      dialog.close();
      onYes();
    });
    dialog.showModal();
    no.focus();
  }

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-confirm')) return;
    if (form.querySelector('input[name="confirm"]')) return;
    if (typeof HTMLDialogElement !== 'function') return; // the server asks instead
    event.preventDefault();
    ask(form.getAttribute('data-confirm'), form.getAttribute('data-confirm-button') || 'Confirm', function () {
      var yes = document.createElement('input');
      yes.type = 'hidden';
      yes.name = 'confirm';
      yes.value = 'yes';
      form.append(yes);
      form.submit();
    });
  });

  // The account chooser: filter by name or id as one types, and for
  // checkboxes a "select all" that ticks the choices shown. The list stays
  // a plain form: hidden choices keep their state and are submitted.
  function accountTools(tools) {
    var form = tools.closest('form');
    var search = tools.querySelector('[data-account-search]');
    var all = tools.querySelector('[data-select-all]');
    var count = tools.querySelector('[data-account-count]');
    var choices = Array.prototype.slice.call(form.querySelectorAll('[data-account-choice]'));
    tools.hidden = false;
    function shown() {
      return choices.filter(function (c) { return !c.hidden; });
    }
    function refresh() {
      var visible = shown();
      if (all) {
        var boxes = visible.map(function (c) { return c.querySelector('input'); });
        var ticked = boxes.filter(function (b) { return b.checked; }).length;
        all.checked = boxes.length > 0 && ticked === boxes.length;
        all.indeterminate = ticked > 0 && ticked < boxes.length;
        all.disabled = boxes.length === 0;
      }
      count.textContent = visible.length + ' of ' + choices.length + ' accounts shown';
    }
    search.addEventListener('input', function () {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      choices.forEach(function (c) {
        var text = c.textContent.toLowerCase();
        c.hidden = !words.every(function (w) { return text.indexOf(w) !== -1; });
      });
      refresh();
    });
    if (all) {
      all.addEventListener('change', function () {
        shown().forEach(function (c) { c.querySelector('input').checked = all.checked; });
        refresh();
      });
      form.addEventListener('change', function (event) {
        if (event.target !== all) refresh();
      });
    }
    refresh();
  }

  // A page paused for want of a worker (Sync controls) looks again every
  // 15 s, so its buttons come back by themselves once one is running.
  function recheckWhenPaused() {
    var paused = document.querySelector('[data-recheck-after]');
    if (!paused) return;
    var seconds = parseInt(paused.getAttribute('data-recheck-after'), 10) || 15;
    setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll('[data-account-tools]'), accountTools);
    recheckWhenPaused();
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
