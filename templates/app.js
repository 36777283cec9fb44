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
})();
